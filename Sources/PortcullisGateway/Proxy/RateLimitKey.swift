import Crypto
import NIOHTTP1
import PortcullisCluster
import PortcullisJOSE
#if canImport(Glibc)
import Glibc
#endif

/// The string a rate-limit policy counts by: `sub:ISSUER/SUBJECT`, `client:ISSUER/CLIENT_ID`
/// (ISSUER the issuer's config name), `ip:…`, `hdr:…` or `route:…`. When the token lacks the claim (or the route is
/// unauthenticated) the client IP stands in, so requests are never left unlimited. The parts a
/// client chooses are kept small: an IPv6 address counts by its `/ipv6_prefix` network (one
/// client holds a whole /64), and a header value longer than `maxHeaderValueBytes` by its SHA-256.
/// How many keys a policy holds is bounded separately (`RateLimitPolicy.maxKeys`).
enum RateLimitKey {
    static let maxHeaderValueBytes = 64

    static func value(for policy: RateLimitPolicy, route: String, identity: VerifiedToken?, headers: HTTPHeaders, clientAddress: String?) -> String {
        switch policy.key {
        // Subjects and client ids are an issuer's names: the issuer (its config name) is part of the
        // key, so a token of another issuer naming the same client cannot spend this one's budget.
        case .subject: return identity.flatMap { token in token.subject.map { "sub:" + token.issuerName + "/" + $0 } } ?? ip(clientAddress, policy: policy)
        case .clientID: return identity.flatMap { token in token.clientID.map { "client:" + token.issuerName + "/" + $0 } } ?? ip(clientAddress, policy: policy)
        case .ip: return ip(clientAddress, policy: policy)
        case .header(let name): return headers.first(name: name).map { "hdr:" + bounded($0) } ?? ip(clientAddress, policy: policy)
        case .route: return "route:" + route
        }
    }

    private static func ip(_ address: String?, policy: RateLimitPolicy) -> String {
        guard let address else { return "ip:unknown" }
        guard address.utf8.contains(UInt8(ascii: ":")), policy.ipv6Prefix < 128 else { return "ip:" + address }
        return "ip:" + (network(of: address, prefix: policy.ipv6Prefix) ?? address)
    }

    /// `address`'s `/prefix` network in canonical form (`2001:db8:1:2::/64`), nil if not IPv6.
    static func network(of address: String, prefix: Int) -> String? {
        var bytes = in6_addr()
        guard inet_pton(AF_INET6, address, &bytes) == 1 else { return nil }
        withUnsafeMutableBytes(of: &bytes) { raw in
            for index in 0..<16 {
                let keep = min(8, max(0, prefix - index * 8))
                raw[index] &= keep == 8 ? 0xFF : ~(0xFF >> UInt8(keep))
            }
        }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &bytes, &text, socklen_t(text.count)) != nil else { return nil }
        return String(cString: text) + "/" + String(prefix)
    }

    private static func bounded(_ value: String) -> String {
        guard value.utf8.count > maxHeaderValueBytes else { return value }
        return "sha256:" + SHA256.hash(data: Array(value.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined()
    }
}
