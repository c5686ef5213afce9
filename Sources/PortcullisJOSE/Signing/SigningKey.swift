import Crypto
import CryptoExtras

/// A private key for issuing tokens (the built-in authorization server, tests).
public enum SigningKey: Sendable {
    /// An RSA key for one of RS256/384/512 or PS256/384/512.
    case rsa(_RSA.Signing.PrivateKey, JWSAlgorithm)
    /// An ECDSA P-256 key, for ES256.
    case p256(P256.Signing.PrivateKey)
    /// An ECDSA P-384 key, for ES384.
    case p384(P384.Signing.PrivateKey)
    /// An Ed25519 key, for EdDSA.
    case ed25519(Curve25519.Signing.PrivateKey)
    /// A secret for HS256/384/512.
    case hmac(SymmetricKey, JWSAlgorithm)

    /// A fresh key for `algorithm` (RSA keys are 2048 bits).
    public static func generate(_ algorithm: JWSAlgorithm) throws -> SigningKey {
        switch algorithm {
        case .RS256, .RS384, .RS512, .PS256, .PS384, .PS512:
            return .rsa(try _RSA.Signing.PrivateKey(keySize: .bits2048), algorithm)
        case .ES256: return .p256(P256.Signing.PrivateKey())
        case .ES384: return .p384(P384.Signing.PrivateKey())
        case .EdDSA: return .ed25519(Curve25519.Signing.PrivateKey())
        case .HS256, .HS384, .HS512:
            return .hmac(SymmetricKey(size: SymmetricKeySize(bitCount: IssuerConfig.hashLength(algorithm) * 8)), algorithm)
        }
    }

    /// The algorithm this key signs with.
    public var algorithm: JWSAlgorithm {
        switch self {
        case .rsa(_, let algorithm), .hmac(_, let algorithm): return algorithm
        case .p256: return .ES256
        case .p384: return .ES384
        case .ed25519: return .EdDSA
        }
    }

    /// The public JWK with `kid`, `alg` and `use: sig`. For HMAC keys the secret is NOT included
    /// (the object only names the key); share HMAC secrets through `hmac_secrets` configuration.
    public func publicJWK(keyID: String) -> JSONValue {
        var jwk: [String: JSONValue] = ["kid": .string(keyID), "alg": .string(algorithm.rawValue), "use": "sig"]
        switch self {
        case .rsa(let key, _):
            // getKeyPrimitives cannot fail for a key we hold; an empty JWK would be refused by any reader.
            if let primitives = try? key.publicKey.getKeyPrimitives() {
                jwk["kty"] = "RSA"
                jwk["n"] = .string(Base64URL.encode(primitives.modulus))
                jwk["e"] = .string(Base64URL.encode(primitives.publicExponent))
            }
        case .p256(let key):
            let raw = Array(key.publicKey.rawRepresentation)
            jwk["kty"] = "EC"; jwk["crv"] = "P-256"
            jwk["x"] = .string(Base64URL.encode(raw[0..<32])); jwk["y"] = .string(Base64URL.encode(raw[32..<64]))
        case .p384(let key):
            let raw = Array(key.publicKey.rawRepresentation)
            jwk["kty"] = "EC"; jwk["crv"] = "P-384"
            jwk["x"] = .string(Base64URL.encode(raw[0..<48])); jwk["y"] = .string(Base64URL.encode(raw[48..<96]))
        case .ed25519(let key):
            jwk["kty"] = "OKP"; jwk["crv"] = "Ed25519"
            jwk["x"] = .string(Base64URL.encode(key.publicKey.rawRepresentation))
        case .hmac:
            jwk["kty"] = "oct"
        }
        return .object(jwk)
    }

    /// The verification key matching this private key (for tests and the built-in issuer).
    public func verificationKey(keyID: String?) throws -> VerificationKey {
        switch self {
        case .hmac(let secret, let algorithm):
            return try VerificationKey(hmacKeyID: keyID, secret: secret.withUnsafeBytes { Array($0) }, algorithm: algorithm)
        default:
            var jwk = publicJWK(keyID: keyID ?? "")
            if keyID == nil, case .object(var members) = jwk { members["kid"] = nil; jwk = .object(members) }
            let issuer = IssuerConfig(name: "-", issuer: "-", audiences: ["-"], algorithms: [algorithm], keySource: .none)
            let set = try JWKSet.parse(Array(JSONWriter.serialize(["keys": [jwk]]).utf8), issuer: issuer, logger: nil)
            guard let key = set.allKeys.first else { throw JWKError(set.skipped.first?.reason ?? "key not usable") }
            return key
        }
    }

    /// The private key for storage: a small JSON document `{"alg": ..., "key": base64url}` whose
    /// key is PKCS#8/PKCS#1 DER for RSA, the raw scalar for EC and Ed25519, the secret for HMAC.
    /// Treat the bytes as secret.
    public func exportPrivate() -> [UInt8] {
        let raw: [UInt8]
        switch self {
        case .rsa(let key, _): raw = Array(key.derRepresentation)
        case .p256(let key): raw = Array(key.rawRepresentation)
        case .p384(let key): raw = Array(key.rawRepresentation)
        case .ed25519(let key): raw = Array(key.rawRepresentation)
        case .hmac(let secret, _): raw = secret.withUnsafeBytes { Array($0) }
        }
        let document: JSONValue = ["alg": .string(algorithm.rawValue), "key": .string(Base64URL.encode(raw))]
        return Array(JSONWriter.serialize(document).utf8)
    }

    /// Reads what ``exportPrivate()`` wrote.
    public init(exported: [UInt8]) throws {
        let document: JSONValue
        do { document = try JOSEJSONReader.parse(exported) } catch { throw JWKError("exported key is not JSON: \(error)") }
        guard let algText = document["alg"]?.stringValue, let algorithm = JWSAlgorithm(rawValue: algText),
              let keyText = document["key"]?.stringValue, let raw = Base64URL.decode(keyText) else {
            throw JWKError("exported key needs alg and key")
        }
        switch algorithm {
        case .RS256, .RS384, .RS512, .PS256, .PS384, .PS512:
            self = .rsa(try _RSA.Signing.PrivateKey(derRepresentation: raw), algorithm)
        case .ES256: self = .p256(try P256.Signing.PrivateKey(rawRepresentation: raw))
        case .ES384: self = .p384(try P384.Signing.PrivateKey(rawRepresentation: raw))
        case .EdDSA: self = .ed25519(try Curve25519.Signing.PrivateKey(rawRepresentation: raw))
        case .HS256, .HS384, .HS512: self = .hmac(SymmetricKey(data: raw), algorithm)
        }
    }

    /// The JWS signature over `input` (raw R||S for ECDSA).
    func sign(_ input: [UInt8]) throws -> [UInt8] {
        switch self {
        case .rsa(let key, let algorithm):
            let padding: _RSA.Signing.Padding = [.PS256, .PS384, .PS512].contains(algorithm) ? .PSS : .insecurePKCS1v1_5
            switch algorithm {
            case .RS384, .PS384: return Array(try key.signature(for: SHA384.hash(data: input), padding: padding).rawRepresentation)
            case .RS512, .PS512: return Array(try key.signature(for: SHA512.hash(data: input), padding: padding).rawRepresentation)
            default: return Array(try key.signature(for: SHA256.hash(data: input), padding: padding).rawRepresentation)
            }
        case .p256(let key): return Array(try key.signature(for: SHA256.hash(data: input)).rawRepresentation)
        case .p384(let key): return Array(try key.signature(for: SHA384.hash(data: input)).rawRepresentation)
        case .ed25519(let key): return Array(try key.signature(for: input))
        case .hmac(let secret, let algorithm):
            switch algorithm {
            case .HS384: return Array(HMAC<SHA384>.authenticationCode(for: input, using: secret))
            case .HS512: return Array(HMAC<SHA512>.authenticationCode(for: input, using: secret))
            default: return Array(HMAC<SHA256>.authenticationCode(for: input, using: secret))
            }
        }
    }
}
