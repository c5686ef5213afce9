import Crypto
import Foundation

/// Checks admin bearer tokens against the configured SHA-256 hashes.
///
/// The presented token is hashed and compared with every configured hash in constant time, with
/// no early exit, so neither the content of a hash nor which entry matched leaks through timing.
struct AdminAuthenticator: Sendable {
    let credentials: [AdminCredential]

    /// The credential an `Authorization` header value proves, or nil.
    func authenticate(authorization: String?) -> AdminCredential? {
        guard let authorization, let token = Self.bearerToken(authorization) else { return nil }
        let digest = SHA256.hash(data: Array(token.utf8))
        var match: AdminCredential?
        for credential in credentials where Self.digest(digest, matches: credential.digest) {
            match = credential
        }
        return match
    }

    /// Whether `stored` holds `digest`, compared in constant time by swift-crypto: `Digest`'s `==`
    /// with bytes is its `safeCompare` (on Linux `constantTimeCompare`, an OR of XORs over every
    /// byte with no early exit; CryptoKit's on Apple platforms). Only a length mismatch returns
    /// early, and a length is no secret (every stored digest is 32 bytes).
    static func digest(_ digest: SHA256.Digest, matches stored: [UInt8]) -> Bool {
        digest == stored
    }

    /// The token of `Bearer <token>` (scheme case-insensitive, RFC 6750 §2.1).
    static func bearerToken(_ header: String) -> String? {
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }
}
