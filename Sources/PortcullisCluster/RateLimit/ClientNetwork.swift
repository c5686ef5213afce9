#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The network a client's address is counted by, wherever one client must not spread its
/// requests over many counters: rate-limit keys on the gateways, sign-in throttling on the
/// control plane. One client commonly holds a whole IPv6 /64 (and a subscriber a /48), so an
/// IPv6 address counts by its network; an IPv6 address that stands for an IPv4 client counts
/// as that IPv4 address.
public enum ClientNetwork {
    /// The counter key of `address`: an IPv4 address as written; the IPv4 client of an
    /// IPv4-mapped, NAT64, 6to4 or Teredo address (`embeddedIPv4`); another IPv6 address its
    /// `/ipv6Prefix` network in canonical form (`2001:db8:1:2::/64`), or the address itself when
    /// the prefix is 128 or more; text that is not an address, as written.
    public static func key(of address: String, ipv6Prefix: Int) -> String {
        guard address.utf8.contains(UInt8(ascii: ":")) else { return address }
        var bytes = in6_addr()
        guard inet_pton(AF_INET6, address, &bytes) == 1 else { return address }
        if let client = embeddedIPv4(bytes) { return client }
        guard ipv6Prefix < 128 else { return address }
        return network(of: bytes, prefix: ipv6Prefix) ?? address
    }

    /// The IPv4 client an IPv6 address stands for, where the address says so: an IPv4-mapped
    /// address (`::ffff:a.b.c.d`, how a dual-stack listener sees an IPv4 client), NAT64's
    /// well-known prefix `64:ff9b::/96` (RFC 6052), 6to4's `2002:V4::/48` (RFC 3056) and
    /// Teredo's `2001:0::/32` (RFC 4380, the client's address inverted in the last 32 bits). By
    /// its /64, every IPv4 client behind a NAT64 gateway would share one key, and one 6to4 host
    /// would hold 65 536 of them. Other NAT64 prefixes (RFC 8215's
    /// `64:ff9b:1::/48`, an operator's own) are not recognised.
    public static func embeddedIPv4(_ address: in6_addr) -> String? {
        withUnsafeBytes(of: address) { b -> String? in
            // Read in place: an IPv6 client's every request on an `ip` policy comes here.
            let at: Int, inverted: Bool
            if b[4] == 0, b[5] == 0, b[6] == 0, b[7] == 0, b[8] == 0, b[9] == 0,
               (b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0 && b[10] == 0xFF && b[11] == 0xFF)
                || (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[10] == 0 && b[11] == 0) {
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
    public static func network(of address: String, prefix: Int) -> String? {
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
}
