import PortcullisConfig

/// Header edits applied to requests (before forwarding) or responses (before returning).
public struct HeaderRules: Sendable {
    /// Replace or add these headers.
    public var setFields: [(name: String, value: String)] = []
    /// Remove these headers (case-insensitive).
    public var remove: [String] = []

    public var isEmpty: Bool { setFields.isEmpty && remove.isEmpty }

    init() {}

    /// Fields that say where a message body ends: a rule changing them would let the two sides
    /// of the gateway disagree about it (request smuggling, response splitting).
    static func isFraming(_ name: String) -> Bool {
        ["content-length", "transfer-encoding"].contains(name.lowercased())
    }

    /// Fields about one connection, which the gateway states for each side itself (RFC 9110
    /// §7.6.1): a rule setting one would contradict it (a `Connection: keep-alive` on a response
    /// the gateway closes after).
    static func isConnectionLevel(_ name: String) -> Bool {
        ["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"].contains(name.lowercased())
    }

    init(node: ConfigNode) throws {
        var map = try node.mapping()
        if let setNode = map.optional("set") {
            var entries = try setNode.mapping()
            for (name, value) in entries.all() {
                guard HeaderName.isValid(name) else { throw value.error("'\(name)' is not a valid header name") }
                guard !Self.isFraming(name) else { throw value.error("'\(name)' frames the body and is set by the gateway itself") }
                guard !Self.isConnectionLevel(name) else { throw value.error("'\(name)' is about one connection and is set by the gateway itself") }
                let text = try value.string()
                // Written out as is (see HeaderRewriter): only visible characters, spaces and tabs.
                guard !text.utf8.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }) else {
                    throw value.error("header values may not contain control characters")
                }
                setFields.append((name, text))
            }
        }
        if let removeNode = map.optional("remove") {
            remove = try removeNode.stringList()
            for name in remove where !HeaderName.isValid(name) { throw removeNode.error("'\(name)' is not a valid header name") }
            for name in remove where Self.isFraming(name) { throw removeNode.error("'\(name)' frames the body and cannot be removed") }
        }
        try map.finish()
    }
}
