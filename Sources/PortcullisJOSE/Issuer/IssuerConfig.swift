import Crypto
import PortcullisConfig

/// One trusted token issuer (an entry of `issuers:`): which `iss`, audiences and algorithms are
/// accepted, and where its keys come from.
public struct IssuerConfig: Sendable {
    /// Where an issuer's verification keys come from.
    public enum KeySource: Sendable, Equatable {
        /// A JWKS document on disk (absolute path), loaded at start and on reload.
        case jwksFile(String)
        /// A JWKS URL fetched in the background.
        case jwksURI(String)
        /// An OpenID Connect discovery document whose `jwks_uri` is fetched in the background.
        case discovery(String)
        /// Keys are only pushed by the cluster (`KeySetStore.replace`).
        case none
    }

    /// An HMAC secret from configuration: the only way symmetric keys are trusted.
    public struct HMACKey: Sendable, Equatable {
        /// The `kid` tokens name this secret by.
        public var keyID: String
        /// The secret's bytes (from configuration: at least as many as the hash's output).
        public var secret: [UInt8]
        /// The one algorithm it verifies: HS256, HS384 or HS512.
        public var algorithm: JWSAlgorithm

        /// A secret from its parts; nothing is checked.
        public init(keyID: String, secret: [UInt8], algorithm: JWSAlgorithm) {
            self.keyID = keyID
            self.secret = secret
            self.algorithm = algorithm
        }
    }

    /// Short name used by routes, metrics and logs.
    public var name: String
    /// The exact `iss` value.
    public var issuer: String
    /// Accepted `aud` values; a token must name at least one.
    public var audiences: [String]
    /// Allowed `alg` values.
    public var algorithms: [JWSAlgorithm]
    /// Where the issuer's keys come from.
    public var keySource: KeySource
    /// Clock skew tolerated for `exp` and `nbf`.
    public var leewaySeconds: Int
    /// How far `iat` may lie in the future (`iat_leeway_seconds`). Kept small and apart from
    /// `leewaySeconds`: a token stamped later than it was minted could otherwise outlive a
    /// subject or client cut-off made in between (docs/admin-api.md, "Cut-offs").
    public var iatLeewaySeconds: Int
    /// Larger tokens are rejected before any parsing.
    public var maxTokenBytes: Int
    /// How a remote key set is refreshed (`jwks_refresh`).
    public var refresh: JWKSRefreshPolicy
    /// HMAC secrets from `hmac_secrets`, trusted alongside the key set's keys.
    public var hmacKeys: [HMACKey]

    /// `leeway_seconds` when not configured, in seconds.
    public static let defaultLeewaySeconds = 30
    /// The most `leeway_seconds` may be: nodes keep a jti or session revocation this long past its
    /// `exp` (`RevocationSet.expiryGrace`), so a token accepted past its `exp` is still refused.
    public static let maxLeewaySeconds = 300
    /// `iat_leeway_seconds` when not configured, in seconds.
    public static let defaultIatLeewaySeconds = 2
    /// `max_token_bytes` when not configured, in bytes.
    public static let defaultMaxTokenBytes = 8 * 1024

    /// An issuer from its parts; nothing is checked (`init(node:baseDirectory:)` checks).
    public init(name: String, issuer: String, audiences: [String], algorithms: [JWSAlgorithm],
                keySource: KeySource, leewaySeconds: Int = defaultLeewaySeconds, iatLeewaySeconds: Int = defaultIatLeewaySeconds,
                maxTokenBytes: Int = defaultMaxTokenBytes, refresh: JWKSRefreshPolicy = JWKSRefreshPolicy(),
                hmacKeys: [HMACKey] = []) {
        self.name = name
        self.issuer = issuer
        self.audiences = audiences
        self.algorithms = algorithms
        self.keySource = keySource
        self.leewaySeconds = leewaySeconds
        self.iatLeewaySeconds = iatLeewaySeconds
        self.maxTokenBytes = maxTokenBytes
        self.refresh = refresh
        self.hmacKeys = hmacKeys
    }

    /// Reads one entry of the `issuers:` list. Relative `jwks_file` paths are resolved against
    /// `baseDirectory` (the configuration file's folder).
    public init(node: ConfigNode, baseDirectory: String) throws {
        var map = try node.mapping()
        let nameNode = try map.required("name")
        name = try nameNode.nonEmptyString()
        // A node's signed record lists its key sets as `name=version` pairs joined by commas: a
        // name with either character would not read back as it was signed, and the gateway's
        // record would be refused by every reader — left out of `?wait` and rotations.
        guard !name.contains(","), !name.contains("=") else { throw nameNode.error("an issuer's name may not contain ',' or '='") }
        let issuerNode = try map.required("issuer")
        issuer = try issuerNode.nonEmptyString()

        let audiencesNode = try map.required("audiences")
        audiences = try audiencesNode.stringList()
        guard !audiences.isEmpty, !audiences.contains("") else { throw audiencesNode.error("list at least one non-empty audience") }

        let algorithmsNode = try map.required("algorithms")
        var algorithms: [JWSAlgorithm] = []
        for item in try algorithmsNode.sequence() {
            let text = try item.string()
            guard let algorithm = JWSAlgorithm(rawValue: text) else {
                let known = JWSAlgorithm.allCases.map(\.rawValue).joined(separator: ", ")
                throw item.error("unknown algorithm '\(text)' (known: \(known); 'none' is never accepted)")
            }
            if !algorithms.contains(algorithm) { algorithms.append(algorithm) }
        }
        guard !algorithms.isEmpty else { throw algorithmsNode.error("list at least one algorithm") }
        self.algorithms = algorithms

        let sources: [(String, ConfigNode)] = ["jwks_file", "jwks_uri", "discovery_url"].compactMap { key in
            map.optional(key).map { (key, $0) }
        }
        if sources.count > 1 {
            throw sources[1].1.error("give exactly one of jwks_file, jwks_uri, discovery_url (also found \(sources[0].0))")
        }
        if let (key, value) = sources.first {
            let text = try value.nonEmptyString()
            switch key {
            case "jwks_file":
                keySource = .jwksFile(text.hasPrefix("/") ? text : Self.join(baseDirectory, text))
            case "jwks_uri":
                try Self.checkURL(text, node: value)
                keySource = .jwksURI(text)
            default:
                try Self.checkURL(text, node: value)
                keySource = .discovery(text)
            }
        } else {
            keySource = .none
        }

        leewaySeconds = try map.optional("leeway_seconds")?.int(in: 0...Self.maxLeewaySeconds) ?? Self.defaultLeewaySeconds
        iatLeewaySeconds = try map.optional("iat_leeway_seconds")?.int(in: 0...60) ?? Self.defaultIatLeewaySeconds
        if let sizeNode = map.optional("max_token_bytes") {
            maxTokenBytes = try sizeNode.byteCount()
            guard (64...(1 << 20)).contains(maxTokenBytes) else { throw sizeNode.error("must be between 64 bytes and 1MiB") }
        } else {
            maxTokenBytes = Self.defaultMaxTokenBytes
        }
        refresh = try map.optional("jwks_refresh").map { try JWKSRefreshPolicy(node: $0) } ?? JWKSRefreshPolicy()

        var hmacKeys: [HMACKey] = []
        for item in try map.optional("hmac_secrets")?.sequence() ?? [] {
            var entry = try item.mapping()
            let kid = try entry.required("kid").nonEmptyString()
            let secretNode = try entry.required("secret_base64url")
            guard let secret = Base64URL.decode(try secretNode.string()) else {
                throw secretNode.error("not strict unpadded base64url")
            }
            let algNode = try entry.required("alg")
            guard let alg = JWSAlgorithm(rawValue: try algNode.string()), alg.isSymmetric else {
                throw algNode.error("expected HS256, HS384 or HS512")
            }
            // RFC 7518 §3.2: the key must be at least as long as the hash output.
            guard secret.count >= Self.hashLength(alg) else {
                throw secretNode.error("an \(alg.rawValue) secret needs at least \(Self.hashLength(alg)) bytes, got \(secret.count)")
            }
            guard algorithms.contains(alg) else { throw algNode.error("\(alg.rawValue) is not in this issuer's algorithms") }
            guard !hmacKeys.contains(where: { $0.keyID == kid }) else { throw item.error("duplicate kid '\(kid)'") }
            try entry.finish()
            hmacKeys.append(HMACKey(keyID: kid, secret: secret, algorithm: alg))
        }
        self.hmacKeys = hmacKeys
        try map.finish()
    }

    /// Reads the `issuers:` list; names and `issuer` values must be unique.
    public static func list(from node: ConfigNode, baseDirectory: String) throws -> [IssuerConfig] {
        var result: [IssuerConfig] = []
        for item in try node.sequence() {
            let config = try IssuerConfig(node: item, baseDirectory: baseDirectory)
            if result.contains(where: { $0.name == config.name }) { throw item.error("duplicate issuer name '\(config.name)'") }
            if result.contains(where: { $0.issuer.utf8.elementsEqual(config.issuer.utf8) }) {
                throw item.error("two entries for issuer '\(config.issuer)': the iss claim must select exactly one")
            }
            result.append(config)
        }
        return result
    }

    static func hashLength(_ algorithm: JWSAlgorithm) -> Int {
        switch algorithm {
        case .HS384: return 48
        case .HS512: return 64
        default: return 32
        }
    }

    private static func join(_ base: String, _ relative: String) -> String {
        if base.isEmpty { return relative }
        return base.hasSuffix("/") ? base + relative : base + "/" + relative
    }

    /// Keys fetched over plain HTTP could be swapped by anyone on the path, so only HTTPS is
    /// accepted, except on loopback (tests, sidecar issuers).
    private static func checkURL(_ text: String, node: ConfigNode) throws {
        if text.hasPrefix("https://"), text.count > "https://".count { return }
        if text.hasPrefix("http://"), isLoopbackHost(String(text.dropFirst("http://".count))) { return }
        throw node.error("must be an https:// URL (plain http is accepted for loopback addresses only)")
    }

    /// True when the authority at the start of `rest` (`host[:port][/path]`) is a loopback address.
    static func isLoopbackHost(_ rest: String) -> Bool {
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        if authority.contains("@") { return false }
        if authority.hasPrefix("[") { return authority.hasPrefix("[::1]") }
        let host = authority.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        if host == "localhost" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }
}
