import Crypto
import Foundation
import PortcullisConfig
import PortcullisJOSE
import X509

/// Reads the certificates a `self_signed_tls_client_auth` client (RFC 8705 §2.2) is registered
/// with: `self_signed_certificate_sha256` (their `x5t#S256` thumbprints) and
/// `self_signed_jwks_file` (an RFC 7591 `jwks` document whose keys carry `x5c`). The result is the
/// set of SHA-256 digests of the DER certificates; a client presenting any of them over TLS — the
/// handshake proves it holds the key — authenticates as that client.
enum SelfSignedCertificateRegistration {
    /// Each entry: the base64url SHA-256 of the DER certificate (as `cnf.x5t#S256` shows it, 43
    /// characters) or 64 hex digits, colons allowed (as `openssl x509 -fingerprint -sha256` prints).
    static func thumbprints(_ node: ConfigNode) throws -> [[UInt8]] {
        let items = node.isScalar ? [node] : try node.sequence()
        guard !items.isEmpty else { throw node.error("list at least one certificate thumbprint") }
        return try items.map { item in
            let text = try item.string().replacingOccurrences(of: ":", with: "")
            if text.count == 64, let digest = Hex.decode(text) { return digest }
            if text.count == 43, let digest = Base64URL.decode(text), digest.count == 32 { return digest }
            throw item.error("expected the SHA-256 of a DER certificate: 43 base64url characters (x5t#S256) or 64 hex digits")
        }
    }

    /// Every key of the JWK set must carry `x5c`; its first certificate (RFC 7517 §4.7: the one
    /// holding the key) is registered. Errors name the file and the key's index.
    static func jwksFile(_ node: ConfigNode, baseDirectory: String) throws -> [[UInt8]] {
        let text = try node.nonEmptyString()
        let path = text.hasPrefix("/") ? text : URL(fileURLWithPath: baseDirectory).appendingPathComponent(text).path
        let data: String
        do {
            data = try ConfigFile.text(atPath: path)
        } catch {
            throw node.error("cannot read \(path): \(error.reason)")
        }
        let document: JSONValue
        do {
            document = try JOSEJSONReader.parse(Array(data.utf8))
        } catch {
            throw node.error("\(path): \(error)")
        }
        guard let keys = document["keys"]?.arrayValue else { throw node.error("\(path): expected a JWK set ({\"keys\": [...]})") }
        guard !keys.isEmpty else { throw node.error("\(path): the JWK set has no keys") }
        return try keys.enumerated().map { index, key in
            guard let first = key["x5c"]?.arrayValue?.first?.stringValue else {
                throw node.error("\(path): keys[\(index)] has no x5c (self_signed_tls_client_auth registers certificates)")
            }
            // x5c is standard base64 (RFC 7517 §4.7), not base64url.
            guard let der = Data(base64Encoded: first) else { throw node.error("\(path): keys[\(index)].x5c[0] is not base64") }
            do {
                _ = try Certificate(derEncoded: Array(der))
            } catch {
                throw node.error("\(path): keys[\(index)].x5c[0] is not an X.509 certificate: \(error)")
            }
            return Array(SHA256.hash(data: der))
        }
    }
}
