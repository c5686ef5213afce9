import Crypto
import PortcullisJOSE

/// HMAC-SHA256 under the cluster secret over key-set records and revocation events, so that
/// write access to Redis alone cannot inject a signing key or forge a revocation event.
public struct ClusterMAC: Sendable {
    private let key: SymmetricKey

    public init(secret: [UInt8]) {
        key = SymmetricKey(data: secret)
    }

    /// base64url MAC of `fields` joined with an unambiguous separator (lengths are prefixed).
    public func sign(_ fields: [String]) -> String {
        Base64URL.encode(Array(HMAC<SHA256>.authenticationCode(for: Self.canonical(fields), using: key)))
    }

    /// Constant-time check of a MAC produced by `sign`.
    public func verify(_ mac: String, _ fields: [String]) -> Bool {
        guard let bytes = Base64URL.decode(mac), bytes.count == 32 else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(bytes, authenticating: Self.canonical(fields), using: key)
    }

    static func canonical(_ fields: [String]) -> [UInt8] {
        var out: [UInt8] = []
        for field in fields {
            let utf8 = Array(field.utf8)
            out += Array(String(utf8.count).utf8) + [UInt8(ascii: ":")] + utf8
        }
        return out
    }
}
