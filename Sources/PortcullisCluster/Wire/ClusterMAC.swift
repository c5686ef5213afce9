import Crypto
import PortcullisJOSE

/// HMAC-SHA256 under the cluster secret over everything the cluster keeps in Redis that a node
/// acts on: revocation events and heads, key-set records, node records and acknowledgements.
/// Write access to Redis alone therefore cannot make a node apply, forget or confirm anything.
///
/// Every MAC also binds the cluster's key prefix, so two clusters that share a secret and a Redis
/// cannot replay each other's records.
public struct ClusterMAC: Sendable {
    private let key: SymmetricKey
    /// The key prefix, bound into every MAC as the cluster's identity.
    public let cluster: String

    public init(secret: [UInt8], cluster: String) {
        key = SymmetricKey(data: secret)
        self.cluster = cluster
    }

    /// base64url MAC of `fields` (with the cluster id in front), joined with an unambiguous
    /// separator (every field is length-prefixed).
    public func sign(_ fields: [String]) -> String {
        Base64URL.encode(Array(HMAC<SHA256>.authenticationCode(for: canonical(fields), using: key)))
    }

    /// Constant-time check of a MAC produced by `sign`.
    public func verify(_ mac: String, _ fields: [String]) -> Bool {
        guard let bytes = Base64URL.decode(mac), bytes.count == 32 else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(bytes, authenticating: canonical(fields), using: key)
    }

    /// An optional field with nil distinct from the empty string.
    public static func optional(_ value: String?) -> String {
        value.map { "+" + $0 } ?? "-"
    }

    func canonical(_ fields: [String]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(fields.reduce(cluster.utf8.count + 8) { $0 + $1.utf8.count + 8 })
        for field in CollectionOfOne(cluster).lazy + fields {
            out.append(contentsOf: String(field.utf8.count).utf8)
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: field.utf8)
        }
        return out
    }
}
