import Crypto
import CryptoExtras
import Foundation

/// One usable verification key, bound to exactly one algorithm (RFC 8725 §3.1: the key, not the
/// token, decides the algorithm). Immutable and shared by all threads.
public final class VerificationKey: Sendable {
    /// The JWK `kid`, if the key has one.
    public let keyID: String?
    /// The only algorithm this key verifies.
    public let algorithm: JWSAlgorithm
    /// SHA-256 over the algorithm and public key material: identifies "the same key" across JWKS
    /// refreshes (the cache uses it to tell whether a token's key is still in the set).
    public let fingerprint: [UInt8]
    let material: Material

    enum Material: Sendable {
        case rsa(_RSA.Signing.PublicKey, modulusBytes: Int)
        case p256(P256.Signing.PublicKey)
        case p384(P384.Signing.PublicKey)
        case ed25519(Curve25519.Signing.PublicKey)
        // Pre-keyed: the ipad/opad blocks are hashed once here, and each verification copies the
        // keyed state instead of re-deriving it from the secret.
        case hs256(HMAC<SHA256>)
        case hs384(HMAC<SHA384>)
        case hs512(HMAC<SHA512>)
    }

    init(keyID: String?, algorithm: JWSAlgorithm, material: Material, fingerprintInput: [UInt8]) {
        self.keyID = keyID
        self.algorithm = algorithm
        self.material = material
        var input = Array(algorithm.rawValue.utf8)
        input.append(0)
        input.append(contentsOf: fingerprintInput)
        self.fingerprint = Array(SHA256.hash(data: input))
    }

    /// An HMAC key from configuration.
    public convenience init(hmacKeyID keyID: String?, secret: [UInt8], algorithm: JWSAlgorithm) throws(JWKError) {
        let key = SymmetricKey(data: secret)
        let material: Material
        switch algorithm {
        case .HS256: material = .hs256(HMAC<SHA256>(key: key))
        case .HS384: material = .hs384(HMAC<SHA384>(key: key))
        case .HS512: material = .hs512(HMAC<SHA512>(key: key))
        default: throw JWKError("\(algorithm.rawValue) is not an HMAC algorithm")
        }
        self.init(keyID: keyID, algorithm: algorithm, material: material, fingerprintInput: Array(SHA256.hash(data: secret)))
    }

    /// Checks `signature` over `signingInput` (the ASCII `header.payload`). The signature must have
    /// the exact size the algorithm defines: raw R||S for ECDSA (a DER encoding is refused),
    /// the modulus size for RSA, 64 bytes for Ed25519, the hash size for HMAC.
    func isValidSignature(_ signature: [UInt8], signingInput: UnsafeRawBufferPointer) -> Bool {
        switch material {
        case .rsa(let key, let modulusBytes):
            guard signature.count == modulusBytes else { return false }
            let rsaSignature = _RSA.Signing.RSASignature(rawRepresentation: signature)
            switch algorithm {
            case .RS256: return key.isValidSignature(rsaSignature, for: SHA256.hash(data: signingInput), padding: .insecurePKCS1v1_5)
            case .RS384: return key.isValidSignature(rsaSignature, for: SHA384.hash(data: signingInput), padding: .insecurePKCS1v1_5)
            case .RS512: return key.isValidSignature(rsaSignature, for: SHA512.hash(data: signingInput), padding: .insecurePKCS1v1_5)
            // swift-crypto's PSS uses MGF1 with the same hash and a salt as long as the hash: RFC 7518 §3.5.
            case .PS256: return key.isValidSignature(rsaSignature, for: SHA256.hash(data: signingInput), padding: .PSS)
            case .PS384: return key.isValidSignature(rsaSignature, for: SHA384.hash(data: signingInput), padding: .PSS)
            case .PS512: return key.isValidSignature(rsaSignature, for: SHA512.hash(data: signingInput), padding: .PSS)
            default: return false
            }
        case .p256(let key):
            guard signature.count == 64, let ecdsa = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(ecdsa, for: SHA256.hash(data: signingInput))
        case .p384(let key):
            guard signature.count == 96, let ecdsa = try? P384.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(ecdsa, for: SHA384.hash(data: signingInput))
        case .ed25519(let key):
            guard signature.count == 64, Self.isCanonicalEd25519Scalar(signature) else { return false }
            return key.isValidSignature(signature, for: signingInput)
        case .hs256(let keyed):
            var mac = keyed
            mac.update(data: signingInput)
            return Self.constantTimeEquals(mac.finalize(), signature)
        case .hs384(let keyed):
            var mac = keyed
            mac.update(data: signingInput)
            return Self.constantTimeEquals(mac.finalize(), signature)
        case .hs512(let keyed):
            var mac = keyed
            mac.update(data: signingInput)
            return Self.constantTimeEquals(mac.finalize(), signature)
        }
    }

    /// RFC 8032 §5.1.7: S must be below the group order L, or the signature is malleable.
    /// BoringSSL checks this too; we do not rely on that staying true.
    static func isCanonicalEd25519Scalar(_ signature: [UInt8]) -> Bool {
        // L = 2^252 + 27742317777372353535851937790883648493, little-endian.
        let order: [UInt8] = [
            0xED, 0xD3, 0xF5, 0x5C, 0x1A, 0x63, 0x12, 0x58, 0xD6, 0x9C, 0xF7, 0xA2, 0xDE, 0xF9, 0xDE, 0x14,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
        ]
        var i = 31
        while i >= 0 {
            let s = signature[32 + i]
            if s < order[i] { return true }
            if s > order[i] { return false }
            i -= 1
        }
        return false // S == L
    }

    static func constantTimeEquals<MAC: MessageAuthenticationCode>(_ mac: MAC, _ signature: [UInt8]) -> Bool {
        mac.withUnsafeBytes { computed in
            guard computed.count == signature.count else { return false }
            var difference: UInt8 = 0
            for index in 0..<computed.count { difference |= computed[index] ^ signature[index] }
            return difference == 0
        }
    }
}

/// Why a JWK or JWK set could not be used.
public struct JWKError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What is wrong, in words.
    public let description: String
    /// An error saying `description`.
    public init(_ description: String) { self.description = description }
}
