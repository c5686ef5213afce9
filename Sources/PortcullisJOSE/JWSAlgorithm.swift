/// The JWS algorithms Portcullis verifies (RFC 7518 §3, RFC 8037). `none` is deliberately absent:
/// it cannot be configured, and a token naming it in any spelling is rejected.
public enum JWSAlgorithm: String, Sendable, CaseIterable, Hashable {
    /// RSASSA-PKCS1-v1_5 with SHA-256, SHA-384 or SHA-512.
    case RS256, RS384, RS512
    /// RSASSA-PSS with SHA-256, SHA-384 or SHA-512.
    case PS256, PS384, PS512
    /// ECDSA with P-256 and SHA-256, or with P-384 and SHA-384.
    case ES256, ES384
    /// EdDSA with Ed25519 keys.
    case EdDSA
    /// HMAC with SHA-256, SHA-384 or SHA-512 (keys only from configured secrets).
    case HS256, HS384, HS512

    /// The JWK `kty` a key for this algorithm has.
    public var keyType: String {
        switch self {
        case .RS256, .RS384, .RS512, .PS256, .PS384, .PS512: return "RSA"
        case .ES256, .ES384: return "EC"
        case .EdDSA: return "OKP"
        case .HS256, .HS384, .HS512: return "oct"
        }
    }

    /// True for the HMAC family, whose keys only ever come from explicit configuration.
    public var isSymmetric: Bool { keyType == "oct" }

    /// Exact, case-sensitive lookup of a header or JWK `alg` (RFC 7515 §4.1.1: the value is case-sensitive;
    /// the byte comparison also rules out look-alikes that `==`'s canonical equivalence would accept).
    init?(exactly text: String) {
        guard let candidate = JWSAlgorithm(rawValue: text), ExactString.equal(candidate.rawValue, text) else { return nil }
        self = candidate
    }
}
