import Crypto
import CryptoExtras
import Logging

/// The usable verification keys of one issuer, parsed from a JWK set (RFC 7517) plus the
/// issuer's configured HMAC secrets.
///
/// Each key is bound to exactly one algorithm: its `alg` member when present (which must be in the
/// issuer's allowlist and fit the key type), otherwise the *first* algorithm in the issuer's
/// `algorithms` list that fits the key type (EC P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA;
/// for an RSA key without `alg` the list order decides between RS* and PS*).
/// Keys are skipped, with a logged reason, when they are for encryption (`use` other than `sig`,
/// or `key_ops` without `verify`), RSA under 2048 bits, an unsupported type or curve, malformed,
/// carry private-key members, or are `oct` (symmetric keys come only from `hmac_secrets`).
/// A bad key never poisons the rest of the set.
public struct JWKSet: Sendable {
    /// A key that was left out, and why.
    public struct SkippedKey: Sendable, Equatable, CustomStringConvertible {
        /// Position in the `keys` array (nil for configured HMAC secrets and for a duplicate kid
        /// and algorithm).
        public let index: Int?
        /// The key's `kid`, if it had one.
        public let keyID: String?
        /// Why it was left out.
        public let reason: String
        /// `key <index> (kid <kid>): <reason>`, with `-` for no index and no `(kid …)` for no kid.
        public var description: String {
            "key \(index.map(String.init) ?? "-")\(keyID.map { " (kid \($0))" } ?? ""): \(reason)"
        }
    }

    /// Usable keys by `kid`. Several keys may share a `kid` when their algorithms differ; the
    /// token's `alg` then picks one.
    public let keysByID: [String: [VerificationKey]]
    /// Usable keys that have no `kid` (only selectable when the set holds exactly one key).
    public let keysWithoutID: [VerificationKey]
    /// Keys left out, with reasons.
    public let skipped: [SkippedKey]

    /// Number of usable keys.
    public var count: Int { keysByID.values.reduce(0) { $0 + $1.count } + keysWithoutID.count }

    /// Every usable key.
    public var allKeys: [VerificationKey] { keysByID.values.flatMap { $0 } + keysWithoutID }

    /// A set of `keys`, grouped by `kid` (keys without one kept apart). A key whose `kid` and
    /// algorithm repeat an earlier key's is left out and added to `skipped`.
    public init(keys: [VerificationKey], skipped: [SkippedKey] = []) {
        var byID: [String: [VerificationKey]] = [:]
        var withoutID: [VerificationKey] = []
        var skipped = skipped
        for key in keys {
            if let kid = key.keyID {
                if byID[kid, default: []].contains(where: { $0.algorithm == key.algorithm }) {
                    skipped.append(SkippedKey(index: nil, keyID: kid, reason: "duplicate kid and alg; the first one is kept"))
                    continue
                }
                byID[kid, default: []].append(key)
            } else {
                withoutID.append(key)
            }
        }
        self.keysByID = byID
        self.keysWithoutID = withoutID
        self.skipped = skipped
    }

    /// The issuer's configured HMAC secrets alone (issuers without a JWKS).
    public static func configuredKeys(of issuer: IssuerConfig) -> JWKSet {
        var keys: [VerificationKey] = []
        var skipped: [SkippedKey] = []
        for secret in issuer.hmacKeys {
            do {
                keys.append(try VerificationKey(hmacKeyID: secret.keyID, secret: secret.secret, algorithm: secret.algorithm))
            } catch {
                skipped.append(SkippedKey(index: nil, keyID: secret.keyID, reason: error.description))
            }
        }
        return JWKSet(keys: keys, skipped: skipped)
    }

    /// Parses a JWK set document for `issuer` and adds the issuer's configured HMAC secrets.
    /// A document that is not a JSON object with a `keys` array is an error; a bad key is skipped
    /// (and logged at warning level) and the rest are kept.
    public static func parse(_ json: [UInt8], issuer: IssuerConfig, logger: Logger?) throws(JWKError) -> JWKSet {
        let document: JSONValue
        do {
            document = try JOSEJSONReader.parse(json)
        } catch {
            throw JWKError("JWK set is not valid JSON: \(error)")
        }
        guard case .object = document, let keyList = document["keys"]?.arrayValue else {
            throw JWKError("JWK set must be a JSON object with a \"keys\" array")
        }
        var keys: [VerificationKey] = []
        var skipped: [SkippedKey] = []
        for (index, jwk) in keyList.enumerated() {
            let kid = jwk["kid"]?.stringValue
            do {
                if let key = try parseKey(jwk, issuer: issuer) { keys.append(key) }
            } catch {
                skipped.append(SkippedKey(index: index, keyID: kid, reason: error.description))
            }
        }
        let configured = configuredKeys(of: issuer)
        let set = JWKSet(keys: keys + configured.allKeys, skipped: skipped + configured.skipped)
        if let logger {
            for skip in set.skipped {
                logger.warning("JWKS key skipped", metadata: ["issuer": "\(issuer.name)", "key": "\(skip)"])
            }
        }
        return set
    }

    /// The key for a token's `kid` and `alg`, or why there is none.
    enum Lookup {
        case found(VerificationKey)
        case unknownKeyID
        case ambiguousWithoutKeyID(Int)
        case algorithmMismatch(JWSAlgorithm)
    }

    func lookup(keyID keyIDString: String?, algorithm: JWSAlgorithm) -> Lookup {
        if let keyIDString {
            guard let candidates = keysByID[keyIDString] else { return .unknownKeyID }
            var mismatch: JWSAlgorithm?
            for key in candidates {
                // Dictionary lookup compares Strings by canonical equivalence; kid matching is exact bytes.
                guard let candidateID = key.keyID, ExactString.equal(candidateID, keyIDString) else { continue }
                if key.algorithm == algorithm { return .found(key) }
                mismatch = key.algorithm
            }
            return mismatch.map { .algorithmMismatch($0) } ?? .unknownKeyID
        }
        let total = count
        guard total == 1, let only = keysByID.values.first?.first ?? keysWithoutID.first else {
            return .ambiguousWithoutKeyID(total)
        }
        return only.algorithm == algorithm ? .found(only) : .algorithmMismatch(only.algorithm)
    }

    // MARK: Parsing one JWK

    private static let privateMembers = ["d", "p", "q", "dp", "dq", "qi", "oth"]

    /// Returns nil for keys that are fine but not for signatures (logged as skipped by the caller
    /// through the thrown reason instead, so every omission is explained).
    private static func parseKey(_ jwk: JSONValue, issuer: IssuerConfig) throws(JWKError) -> VerificationKey? {
        guard case .object(let members) = jwk else { throw JWKError("not a JSON object") }
        guard let kty = members["kty"]?.stringValue else { throw JWKError("missing kty") }
        var keyID: String?
        if let kidValue = members["kid"] {
            guard let kid = kidValue.stringValue else { throw JWKError("kid is not a string") }
            keyID = kid
        }
        if let use = members["use"] {
            guard use.stringValue == "sig" else { throw JWKError("use is \(JSONWriter.serialize(use)), not \"sig\"") }
        }
        if let ops = members["key_ops"] {
            guard let list = ops.arrayValue, list.contains(.string("verify")) else { throw JWKError("key_ops does not include \"verify\"") }
        }
        if kty == "oct" {
            throw JWKError("symmetric (oct) keys are only taken from the issuer's hmac_secrets configuration")
        }
        if privateMembers.contains(where: { members[$0] != nil }) {
            throw JWKError("contains private key members; a published private key is compromised")
        }

        var declared: JWSAlgorithm?
        if let algValue = members["alg"] {
            guard let text = algValue.stringValue else { throw JWKError("alg is not a string") }
            guard let alg = JWSAlgorithm(rawValue: text) else { throw JWKError("unsupported alg \(JSONWriter.serialize(algValue))") }
            guard alg.keyType == kty else { throw JWKError("alg \(alg.rawValue) does not fit kty \(kty)") }
            guard issuer.algorithms.contains(alg) else { throw JWKError("alg \(alg.rawValue) is not in the issuer's algorithms") }
            declared = alg
        }

        func pick(_ fitting: [JWSAlgorithm]) throws(JWKError) -> JWSAlgorithm {
            if let declared {
                guard fitting.contains(declared) else { throw JWKError("alg \(declared.rawValue) does not fit this key") }
                return declared
            }
            guard let first = issuer.algorithms.first(where: { fitting.contains($0) }) else {
                throw JWKError("no algorithm in the issuer's allowlist fits this \(kty) key")
            }
            return first
        }

        func bytes(_ member: String) throws(JWKError) -> [UInt8] {
            guard let text = members[member]?.stringValue else { throw JWKError("missing \(member)") }
            guard let decoded = Base64URL.decode(text) else { throw JWKError("\(member) is not strict base64url") }
            return decoded
        }

        switch kty {
        case "RSA":
            let algorithm = try pick([.RS256, .RS384, .RS512, .PS256, .PS384, .PS512])
            var n = try bytes("n")
            let e = try bytes("e")
            // RFC 7518 §6.3.1.1 forbids a leading zero octet, but some issuers emit one; it does not change the value.
            while n.first == 0 { n.removeFirst() }
            let bits = n.count * 8 - (n.first.map { $0.leadingZeroBitCount } ?? 0)
            guard bits >= 2048 else { throw JWKError("RSA key of \(bits) bits; at least 2048 are required") }
            guard bits <= 8192 else { throw JWKError("RSA key of \(bits) bits; at most 8192 are accepted") }
            guard !e.isEmpty, e.count <= 8 else { throw JWKError("RSA exponent out of range") }
            let key: _RSA.Signing.PublicKey
            do {
                key = try _RSA.Signing.PublicKey(n: n, e: e)
            } catch {
                throw JWKError("RSA key rejected by the crypto library: \(error)")
            }
            return VerificationKey(keyID: keyID, algorithm: algorithm, material: .rsa(key, modulusBytes: (key.keySizeInBits + 7) / 8),
                                   fingerprintInput: n + [0] + e)
        case "EC":
            guard let crv = members["crv"]?.stringValue else { throw JWKError("missing crv") }
            let x = try bytes("x"), y = try bytes("y")
            switch crv {
            case "P-256":
                let algorithm = try pick([.ES256])
                guard x.count == 32, y.count == 32 else { throw JWKError("P-256 coordinates must be 32 bytes each") }
                guard let key = try? P256.Signing.PublicKey(rawRepresentation: x + y) else { throw JWKError("point is not on P-256") }
                return VerificationKey(keyID: keyID, algorithm: algorithm, material: .p256(key), fingerprintInput: x + y)
            case "P-384":
                let algorithm = try pick([.ES384])
                guard x.count == 48, y.count == 48 else { throw JWKError("P-384 coordinates must be 48 bytes each") }
                guard let key = try? P384.Signing.PublicKey(rawRepresentation: x + y) else { throw JWKError("point is not on P-384") }
                return VerificationKey(keyID: keyID, algorithm: algorithm, material: .p384(key), fingerprintInput: x + y)
            default:
                throw JWKError("unsupported EC curve \(crv)")
            }
        case "OKP":
            guard let crv = members["crv"]?.stringValue else { throw JWKError("missing crv") }
            guard crv == "Ed25519" else { throw JWKError("unsupported OKP curve \(crv)") }
            let algorithm = try pick([.EdDSA])
            let x = try bytes("x")
            guard x.count == 32, let key = try? Curve25519.Signing.PublicKey(rawRepresentation: x) else {
                throw JWKError("Ed25519 public key must be 32 bytes")
            }
            return VerificationKey(keyID: keyID, algorithm: algorithm, material: .ed25519(key), fingerprintInput: x)
        default:
            throw JWKError("unsupported kty \(kty)")
        }
    }
}
