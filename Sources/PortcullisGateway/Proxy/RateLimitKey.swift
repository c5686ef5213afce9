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

    /// The client's own address key, whatever the policy counts by: it picks the overflow key a
    /// new key shares while the policy is full. An IPv4 client by its address; an IPv6 client by
    /// its /48 (or the policy's shorter prefix), the block one subscriber or site commonly holds,
    /// so that one does not hold a group per /64 it has.
    static func client(_ address: String?, policy: RateLimitPolicy) -> String {
        ip(address, prefix: min(48, policy.ipv6Prefix))
    }

    /// Whether `name` — lowercase, as a policy's `header:` key is parsed — appears more than once
    /// in `headers` (a header-keyed policy refuses that). With `underscoresAsDashes` (the listener
    /// forwards names with `_`), `X_Api_Key` counts as `x-api-key`: CGI-style upstreams read both
    /// as one (a second attacker review passed `X-Api-Key: junk` beside `X_Api_Key: real`).
    static func isRepeated(_ name: String, in headers: HTTPHeaders, underscoresAsDashes: Bool) -> Bool {
        var seen = false
        for (field, _) in headers where sameName(field, name, underscoresAsDashes: underscoresAsDashes) {
            if seen { return true }
            seen = true
        }
        return false
    }

    private static func sameName(_ field: String, _ lowercase: String, underscoresAsDashes: Bool) -> Bool {
        guard field.utf8.count == lowercase.utf8.count else { return false }
        for (byte, expected) in zip(field.utf8, lowercase.utf8) {
            var folded = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte + 32 : byte
            if underscoresAsDashes, folded == UInt8(ascii: "_") { folded = UInt8(ascii: "-") }
            if folded != expected { return false }
        }
        return true
    }

    private static func ip(_ address: String?, policy: RateLimitPolicy) -> String {
        ip(address, prefix: policy.ipv6Prefix)
    }

    private static func ip(_ address: String?, prefix: Int) -> String {
        guard let address else { return "ip:unknown" }
        guard address.utf8.contains(UInt8(ascii: ":")) else { return "ip:" + address }
        var bytes = in6_addr()
        guard inet_pton(AF_INET6, address, &bytes) == 1 else { return "ip:" + address }
        if let client = embeddedIPv4(bytes) { return "ip:" + client }
        guard prefix < 128 else { return "ip:" + address }
        return "ip:" + (network(of: bytes, prefix: prefix) ?? address)
    }

    /// The IPv4 client an IPv6 address stands for, where the address says so: NAT64's well-known
    /// prefix `64:ff9b::/96` (RFC 6052), 6to4's `2002:V4::/48` (RFC 3056) and Teredo's
    /// `2001:0::/32` (RFC 4380, the client's address inverted in the last 32 bits). By its /64,
    /// every IPv4 client behind a NAT64 gateway would share one key, and one 6to4 host would hold
    /// 65 536 of them (an attacker review). Other NAT64 prefixes (RFC 8215's `64:ff9b:1::/48`, an
    /// operator's own) are not recognised.
    static func embeddedIPv4(_ address: in6_addr) -> String? {
        withUnsafeBytes(of: address) { b -> String? in
            // Read in place: an IPv6 client's every request on an `ip` policy comes here.
            let at: Int, inverted: Bool
            if b[0] == 0x00, b[1] == 0x64, b[2] == 0xff, b[3] == 0x9b, b[4] == 0, b[5] == 0, b[6] == 0, b[7] == 0,
               b[8] == 0, b[9] == 0, b[10] == 0, b[11] == 0 {
                (at, inverted) = (12, false)
            } else if b[0] == 0x20, b[1] == 0x02 {
                (at, inverted) = (2, false)
            } else if b[0] == 0x20, b[1] == 0x01, b[2] == 0x00, b[3] == 0x00 {
                (at, inverted) = (12, true)
            } else {
                return nil
            }
            func part(_ index: Int) -> String { String(inverted ? ~b[at + index] : b[at + index]) }
            return part(0) + "." + part(1) + "." + part(2) + "." + part(3)
        }
    }

    /// `address`'s `/prefix` network in canonical form (`2001:db8:1:2::/64`), nil if not IPv6.
    static func network(of address: String, prefix: Int) -> String? {
        var bytes = in6_addr()
        guard inet_pton(AF_INET6, address, &bytes) == 1 else { return nil }
        return network(of: bytes, prefix: prefix)
    }

    private static func network(of address: in6_addr, prefix: Int) -> String? {
        var bytes = address
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
