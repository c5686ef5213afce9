import Foundation
import PortcullisConfig
import PortcullisJOSE

/// The optional built-in OAuth 2.0 authorization server (`authorization_server:`).
public struct AuthorizationServerConfig: Sendable {
    /// One OAuth client (`clients:`).
    public struct Client: Sendable, Equatable {
        public var id: String
        /// SHA-256 of the client secret.
        public var secretDigest: [UInt8]
        /// Scopes the client may ask for; a request without `scope` gets all of them.
        public var scopes: [String]
        /// `aud` of its access tokens.
        public var audience: String
        /// `client_credentials` and/or `refresh_token`.
        public var grantTypes: Set<String>
        /// A resource server allowed to introspect every client's tokens (`introspect_any`);
        /// otherwise a client introspects only tokens issued to itself (RFC 7662 §2.1).
        public var introspectAny: Bool = false
        /// RFC 8705 §2.1 `tls_client_auth`: the client authenticates with a client certificate
        /// the public listener verified (`tls.client_ca`) whose subject is exactly this DN, and
        /// its access tokens are bound to that certificate (`cnf.x5t#S256`). nil: a client secret.
        public var tlsClientAuthSubjectDN: String?
        /// RFC 8705 §2.2 `self_signed_tls_client_auth`: SHA-256 digests of the DER certificates
        /// the client is registered with (`self_signed_certificate_sha256`, the `x5c` of
        /// `self_signed_jwks_file`); it authenticates by presenting one of them over TLS on the
        /// public listener, whoever issued it, and its access tokens are bound to it. Empty: not
        /// this method.
        public var selfSignedCertificates: Set<[UInt8]> = []
        /// A public client (`public: true`, RFC 6749 §2.1): no secret; it identifies itself with
        /// `client_id` alone and may use only `authorization_code` (with PKCE) and `refresh_token`.
        public var isPublic: Bool = false
        /// Redirect URIs for `authorization_code`, compared byte for byte (RFC 9700 §2.1).
        public var redirectURIs: [String] = []

        /// The RFC 8705 method the client authenticates with, or nil for a client secret.
        public var certificateMethod: String? {
            if tlsClientAuthSubjectDN != nil { return "tls_client_auth" }
            return selfSignedCertificates.isEmpty ? nil : "self_signed_tls_client_auth"
        }
    }

    public static let supportedGrantTypes = ["client_credentials", "refresh_token", "authorization_code"]
    /// How long an authorization code may be redeemed (RFC 6749 §4.1.2 recommends at most 10 min).
    public static let authorizationCodeTTL: Duration = .seconds(60)

    /// Name of the built-in issuer in the admin API, metrics and gateway node records.
    public var name: String
    /// `iss` of its tokens and base URL of its endpoints.
    public var issuer: String
    /// Default `aud` for clients that name none.
    public var audience: String
    public var accessTokenTTL: Duration
    public var refreshTokenTTL: Duration
    /// How long a grant (a refresh token family: a user's sign-in or a client's
    /// `client_credentials` call) may be refreshed for, however often it is used; nil for no
    /// bound (`refresh_token_max_lifetime: 0`).
    public var refreshTokenMaxLifetime: Duration?
    public var algorithm: JWSAlgorithm
    /// Absolute path of the AES-256-GCM key (base64url) sealing signing keys in Redis.
    public var keyEncryptionKeyFile: String
    /// How often the signing key is rotated; nil: only through the admin API.
    public var rotationInterval: Duration?
    /// How long a rotation waits for every gateway to hold the new key before signing with it.
    public var rotationPropagationTimeout: Duration
    public var clients: [Client]
    /// The users who may sign in at the login page (`users_file`); nil: no users, no login.
    var users: UserDirectory?
    /// Failed sign-ins allowed per username and per client address within a window (`login_throttle`).
    var loginThrottle = LoginThrottle.Limits(perUser: 5, perAddress: 20, window: .seconds(900))
    /// RFC 7009 revocations each client may make per minute that find a token of its own
    /// (`revocations_per_client`; `LoginThrottle.attempt(revokingForClient:limit:)`).
    var revocationsPerClient = 1200
    /// Absolute path of the users file, when there is one.
    public var usersFile: String?
    /// How many users the users file names.
    public var userCount: Int { users?.users.count ?? 0 }

    /// `publicTLS`: whether the public listener serves HTTPS (`tls:`), where self-signed clients
    /// present their certificates.
    init(node: ConfigNode, baseDirectory: String, publicTLS: Bool) throws {
        var map = try node.mapping()
        name = try map.optional("name")?.nonEmptyString() ?? "builtin"
        let issuerNode = try map.required("issuer")
        issuer = try issuerNode.nonEmptyString()
        guard let url = URL(string: issuer), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil,
              url.query == nil, url.fragment == nil else {
            throw issuerNode.error("expected an http(s) URL without query or fragment, e.g. http://127.0.0.1:9000")
        }
        if issuer.hasSuffix("/") { throw issuerNode.error("leave out the trailing slash (the issuer is compared byte for byte)") }
        audience = try map.required("audience").nonEmptyString()
        accessTokenTTL = try Self.positiveDuration(map.optional("access_token_ttl"), default: .seconds(300), minimum: .seconds(5))
        refreshTokenTTL = try Self.positiveDuration(map.optional("refresh_token_ttl"), default: .seconds(86_400), minimum: .seconds(60))
        if let node = map.optional("refresh_token_max_lifetime") {
            let lifetime = try node.duration()
            guard lifetime == .zero || lifetime >= .seconds(1) else { throw node.error("must be at least 1s, or 0 for no bound") }
            refreshTokenMaxLifetime = lifetime == .zero ? nil : lifetime
        } else {
            refreshTokenMaxLifetime = max(Self.defaultRefreshTokenMaxLifetime, refreshTokenTTL)
        }
        if let algNode = map.optional("algorithm") {
            let text = try algNode.string()
            guard let alg = JWSAlgorithm(rawValue: text), !alg.isSymmetric else {
                throw algNode.error("expected an asymmetric algorithm (ES256, ES384, EdDSA, RS256, PS256, …), got '\(text)'")
            }
            algorithm = alg
        } else {
            algorithm = .ES256
        }
        let kekPath = try map.optional("key_encryption_key_file")?.nonEmptyString() ?? "kek.secret"
        keyEncryptionKeyFile = kekPath.hasPrefix("/") ? kekPath : URL(fileURLWithPath: baseDirectory).appendingPathComponent(kekPath).path
        if let rotationNode = map.optional("rotation_interval") {
            let interval = try rotationNode.duration()
            if interval == .zero {
                rotationInterval = nil
            } else {
                guard interval > accessTokenTTL else {
                    throw rotationNode.error("must be longer than access_token_ttl (or 0 to rotate only through the admin API)")
                }
                rotationInterval = interval
            }
        } else {
            rotationInterval = .seconds(86_400)
        }
        rotationPropagationTimeout = try Self.positiveDuration(map.optional("rotation_propagation_timeout"), default: .seconds(10), minimum: .zero)

        var clients: [Client] = []
        for item in try map.optional("clients")?.sequence() ?? [] {
            var entry = try item.mapping()
            let id = try entry.required("client_id").nonEmptyString()
            guard !clients.contains(where: { $0.id == id }) else { throw item.error("duplicate client_id '\(id)'") }
            let subjectDN = try entry.optional("tls_client_auth_subject_dn")?.nonEmptyString()
            let thumbprintsNode = entry.optional("self_signed_certificate_sha256")
            let jwksNode = entry.optional("self_signed_jwks_file")
            var selfSigned: [([UInt8], ConfigNode)] = []
            if let thumbprintsNode {
                selfSigned += try SelfSignedCertificateRegistration.thumbprints(thumbprintsNode).map { ($0, thumbprintsNode) }
            }
            if let jwksNode {
                selfSigned += try SelfSignedCertificateRegistration.jwksFile(jwksNode, baseDirectory: baseDirectory).map { ($0, jwksNode) }
            }
            if let selfSignedNode = thumbprintsNode ?? jwksNode {
                guard subjectDN == nil else {
                    throw selfSignedNode.error("a client authenticates with tls_client_auth_subject_dn or a self-signed certificate, not both")
                }
                guard publicTLS else {
                    throw selfSignedNode.error("self_signed_tls_client_auth needs tls: on the public listener (the certificate comes in its TLS handshake)")
                }
            }
            for (certificate, certificateNode) in selfSigned {
                if let owner = clients.first(where: { $0.selfSignedCertificates.contains(certificate) }) {
                    throw certificateNode.error("certificate \(Base64URL.encode(certificate)) is already registered for client '\(owner.id)'")
                }
            }
            let publicNode = entry.optional("public")
            let isPublic = try publicNode?.bool() ?? false
            let digest: [UInt8]
            if isPublic {
                guard subjectDN == nil, selfSigned.isEmpty, entry.optional("secret_sha256") == nil else {
                    throw publicNode!.error("a public client has no secret and no certificate")
                }
                digest = []
            } else if let secretNode = entry.optional("secret_sha256") {
                guard subjectDN == nil else { throw secretNode.error("a client authenticates with a secret or with tls_client_auth_subject_dn, not both") }
                guard selfSigned.isEmpty else { throw secretNode.error("a client authenticates with a secret or with a self-signed certificate, not both") }
                guard let decoded = Hex.decode(try secretNode.string()), decoded.count == 32 else {
                    throw secretNode.error("expected the SHA-256 of the client secret as 64 hex digits")
                }
                digest = decoded
            } else {
                guard subjectDN != nil || !selfSigned.isEmpty else {
                    throw item.error("client '\(id)' needs secret_sha256, tls_client_auth_subject_dn, self_signed_certificate_sha256 or self_signed_jwks_file")
                }
                digest = []
            }
            let scopesNode = entry.optional("scopes")
            let scopes = try scopesNode?.stringList() ?? []
            for scope in scopes where scope.isEmpty || scope.contains(" ") || scope.contains("\"") || scope.contains("\\") {
                throw scopesNode!.error("scope '\(scope)' is not a valid scope token (RFC 6749 §3.3)")
            }
            let clientAudience = try entry.optional("audience")?.nonEmptyString() ?? audience
            let grantsNode = entry.optional("grant_types")
            let grants = try grantsNode?.stringList() ?? (isPublic ? ["authorization_code"] : ["client_credentials"])
            for grant in grants where !Self.supportedGrantTypes.contains(grant) {
                throw grantsNode!.error("unsupported grant type '\(grant)' (supported: \(Self.supportedGrantTypes.joined(separator: ", ")); implicit and password are not offered, RFC 9700 §2.1.2, §2.4)")
            }
            if isPublic, grants.contains("client_credentials") {
                throw (grantsNode ?? item).error("a public client cannot use client_credentials (it has no credentials)")
            }
            let redirectNode = entry.optional("redirect_uris")
            let redirectURIs = try redirectNode?.stringList() ?? []
            for uri in redirectURIs {
                guard let url = URL(string: uri), let scheme = url.scheme?.lowercased(), let host = url.host, url.fragment == nil else {
                    throw redirectNode!.error("redirect URI '\(uri)' must be an absolute URL without a fragment (RFC 6749 §3.1.2)")
                }
                guard scheme == "https" || (scheme == "http" && Self.isLoopback(host)) else {
                    throw redirectNode!.error("redirect URI '\(uri)' must use https (http only on loopback, RFC 9700 §2.6)")
                }
            }
            if grants.contains("authorization_code"), redirectURIs.isEmpty {
                throw (grantsNode ?? item).error("authorization_code needs redirect_uris (matched exactly, RFC 9700 §2.1)")
            }
            let introspectAnyNode = entry.optional("introspect_any")
            let introspectAny = try introspectAnyNode?.bool() ?? false
            if isPublic, introspectAny {
                // Anyone can name a public client: it would let anyone introspect every token.
                throw introspectAnyNode!.error("a public client cannot be a resource server (introspect_any): it has no credentials")
            }
            try entry.finish()
            clients.append(Client(id: id, secretDigest: digest, scopes: scopes, audience: clientAudience, grantTypes: Set(grants),
                                  introspectAny: introspectAny, tlsClientAuthSubjectDN: subjectDN,
                                  selfSignedCertificates: Set(selfSigned.map(\.0)), isPublic: isPublic, redirectURIs: redirectURIs))
        }
        self.clients = clients
        if let usersNode = map.optional("users_file") {
            let path = try usersNode.nonEmptyString()
            let resolved = path.hasPrefix("/") ? path : URL(fileURLWithPath: baseDirectory).appendingPathComponent(path).path
            guard FileManager.default.fileExists(atPath: resolved) else { throw usersNode.error("users file \(resolved) does not exist") }
            usersFile = resolved
            users = try UserDirectory.load(file: resolved)
            // The session cookie is always `Secure`: browsers keep such cookies over plain http
            // only on loopback, so a plaintext issuer is allowed there alone.
            if let url = URL(string: issuer), url.scheme == "http", !Self.isLoopback(url.host ?? "") {
                throw issuerNode.error("the login page needs an https issuer (http only on loopback), because its session cookie is Secure")
            }
        }
        if let throttleNode = map.optional("login_throttle") {
            var throttle = try throttleNode.mapping()
            loginThrottle.perUser = try throttle.optional("per_user")?.int(in: 1...1_000) ?? loginThrottle.perUser
            loginThrottle.perAddress = try throttle.optional("per_address")?.int(in: 1...100_000) ?? loginThrottle.perAddress
            loginThrottle.window = try Self.positiveDuration(throttle.optional("window"), default: loginThrottle.window, minimum: .seconds(1))
            try throttle.finish()
        }
        revocationsPerClient = try map.optional("revocations_per_client")?.int(in: 1...1_000_000) ?? revocationsPerClient
        if users == nil, let client = clients.first(where: { $0.grantTypes.contains("authorization_code") }) {
            throw node.error("client '\(client.id)' uses authorization_code, which needs users_file (someone has to sign in)")
        }
        try map.finish()
    }

    /// 127.0.0.0/8, ::1 and localhost: where browsers treat plain http as a secure context. An
    /// address only — written as one, dotted quad or IPv6 —, never a name that starts like one
    /// (`127.0.0.1.nip.io` resolves wherever its owner likes).
    static func isLoopback(_ host: String) -> Bool {
        let bare = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        if bare == "localhost" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, bare, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, bare, &v6) == 1 else { return false }
        return withUnsafeBytes(of: &v6) { $0.elementsEqual([UInt8](repeating: 0, count: 15) + [1]) }
    }

    /// A grant is refreshed for at most 30 days by default (Auth0's absolute lifetime): a user
    /// then signs in again, and a refresh token that leaked is not good forever by being used.
    public static let defaultRefreshTokenMaxLifetime: Duration = .seconds(30 * 86_400)

    private static func positiveDuration(_ node: ConfigNode?, default value: Duration, minimum: Duration) throws -> Duration {
        guard let node else { return value }
        let duration = try node.duration()
        guard duration >= minimum else { throw node.error("must be at least \(minimum)") }
        return duration
    }

    /// Every certificate registered for `self_signed_tls_client_auth`, all clients together.
    var selfSignedCertificates: Set<[UInt8]> {
        clients.reduce(into: []) { $0.formUnion($1.selfSignedCertificates) }
    }

    /// Every audience a token of this server can carry (for its own verifier).
    var allAudiences: [String] {
        var result = [audience]
        for client in clients where !result.contains(client.audience) { result.append(client.audience) }
        return result
    }

    /// The issuer entry the control plane verifies its own tokens with (introspection, RFC 7009);
    /// its keys are pushed from the signing-key ring.
    var issuerConfig: IssuerConfig {
        IssuerConfig(name: name, issuer: issuer, audiences: allAudiences, algorithms: [algorithm], keySource: .none)
    }

    /// The issuer entry introspection verifies with: no leeway for `exp` and `nbf`, so `active`
    /// is false from the second `exp` names and while `nbf` lies ahead (RFC 7662 §2.2). `iat`
    /// keeps the issuer's small future tolerance (two control planes' clocks differ a little).
    var introspectionIssuerConfig: IssuerConfig {
        var config = issuerConfig
        config.leewaySeconds = 0
        return config
    }
}
