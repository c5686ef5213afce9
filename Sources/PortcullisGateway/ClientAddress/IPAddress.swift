#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 address as bytes (4 or 16). An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`)
/// is the IPv4 address it maps, as the gateway's listener reports it.
struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    let bytes: [UInt8]

    var isIPv4: Bool { bytes.count == 4 }

    init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// A bare address (`192.0.2.1`, `2001:db8::1`), nil for anything else (ports, brackets, zones).
    init?(_ text: some StringProtocol) {
        let text = String(text)
        guard !text.isEmpty, text.utf8.count <= 45 else { return nil }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let all = withUnsafeBytes(of: &v6) { Array($0) }
        bytes = all[0..<12].elementsEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]) ? Array(all[12...]) : all
    }

    /// Canonical text: dotted quad, or RFC 5952 IPv6.
    var description: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let written: UnsafePointer<CChar>? = bytes.withUnsafeBytes { raw in
            inet_ntop(isIPv4 ? AF_INET : AF_INET6, raw.baseAddress, &text, socklen_t(text.count))
        }
        guard written != nil else { return "" }
        return String(cString: text)
    }

    /// An address as a forwarding header carries it: bare, `[v6]` with an optional `:port`, or
    /// `v4:port`; surrounding quotes (RFC 7239 quoted-string) removed. Nil for `unknown`,
    /// obfuscated identifiers (`_hidden`) and anything else that is not an address.
    init?(forwardedNode text: Substring) {
        var node = text
        if node.count >= 2, node.first == "\"", node.last == "\"" { node = node.dropFirst().dropLast() }
        if node.first == "[" {
            guard let close = node.firstIndex(of: "]") else { return nil }
            let rest = node[node.index(after: close)...]
            guard rest.isEmpty || (rest.first == ":" && rest.count > 1) else { return nil }
            // Brackets hold an IPv6 address (RFC 7239 §6): an IPv4-mapped one (`[::ffff:192.0.2.1]`,
            // what a dual-stack proxy writes for an IPv4 client) is taken as that IPv4 address; a
            // bare IPv4 address in brackets is refused.
            let inside = node[node.index(after: node.startIndex)..<close]
            guard inside.contains(":"), let address = IPAddress(inside) else { return nil }
            self = address
            return
        }
        if let address = IPAddress(node) {
            self = address
            return
        }
        // `v4:port`: exactly one colon (an IPv6 address has more).
        let parts = node.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[1].isEmpty, parts[1].allSatisfy(\.isASCII), parts[1].allSatisfy(\.isNumber),
              let address = IPAddress(parts[0]), address.isIPv4 else { return nil }
        self = address
    }
}
