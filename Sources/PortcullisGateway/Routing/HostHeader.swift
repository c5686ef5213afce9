/// The `Host` header: its syntax (RFC 9110 §7.2: `uri-host [ ":" port ]`) and the name routes
/// match against.
enum HostHeader {
    /// A reg-name of letters, digits, `-`, `.`, `_` and `~`, or a bracketed IP literal, then an
    /// optional port of up to five digits. Commas, spaces, slashes, `@` and escapes are refused:
    /// an upstream or a cache could read such a value as another host than the router did.
    static func isValid(_ value: some StringProtocol) -> Bool {
        // Over contiguous bytes when the string has them (always, for a parsed header): walking a
        // `String.UTF8View` by index showed in request-path profiles.
        value.utf8.withContiguousStorageIfAvailable { isValid(bytes: $0) } ?? isValid(bytes: Array(value.utf8))
    }

    private static func isValid(bytes: some Collection<UInt8>) -> Bool {
        var rest = bytes[...]
        if rest.first == UInt8(ascii: "[") {
            guard let close = rest.firstIndex(of: UInt8(ascii: "]")) else { return false }
            let literal = rest[rest.index(after: rest.startIndex)..<close]
            guard !literal.isEmpty, literal.allSatisfy({ isHexDigit($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".") }) else { return false }
            rest = rest[rest.index(after: close)...]
        } else {
            let end = rest.firstIndex(of: UInt8(ascii: ":")) ?? rest.endIndex
            let name = rest[..<end]
            guard !name.isEmpty, name.allSatisfy(RequestTarget.isUnreserved) else { return false }
            rest = rest[end...]
        }
        guard let colon = rest.first else { return true }
        guard colon == UInt8(ascii: ":") else { return false }
        let port = rest.dropFirst()
        return (1...5).contains(port.count) && port.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    /// The host without its port and without a trailing dot (`a.test.` is `a.test`, as DNS and
    /// nginx read it), lower-cased; nil when empty.
    static func name(_ host: String?) -> String? {
        guard let host, !host.isEmpty else { return nil }
        // Bytes, not Characters: `[v6]:port` keeps what is inside the brackets, `name:port` what is
        // before the colon. Lower-casing allocates only when there is an upper-case letter.
        let utf8 = host.utf8
        let name: Substring.UTF8View
        if utf8.first == UInt8(ascii: "[") {
            let inner = utf8.dropFirst()
            name = inner[..<(inner.firstIndex(of: UInt8(ascii: "]")) ?? inner.endIndex)]
        } else {
            name = utf8[..<(utf8.firstIndex(of: UInt8(ascii: ":")) ?? utf8.endIndex)]
        }
        var text = Substring(name)
        if text.hasSuffix("."), utf8.first != UInt8(ascii: "[") { text = text.dropLast() }
        if text.isEmpty { return nil }
        return text.utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) ? text.lowercased() : String(text)
    }

    /// A route's `host` as `name(_:)` gives requests' — lower case, no port, no trailing dot, an
    /// IPv6 address without its brackets — or nil when `configured` is no such name (a port, a
    /// wildcard, a trailing dot), which would match no request.
    static func routeName(_ configured: String) -> String? {
        guard isValid(configured), let routed = name(configured) else { return nil }
        let raw = configured.lowercased()
        return raw == routed || raw == "[" + routed + "]" ? routed : nil
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "f"))
    }
}
