/// A `host:port` pair (listeners, upstream targets). IPv6 hosts are written in brackets: `[::1]:9001`.
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    /// The host name or IP address (an IPv6 address without its brackets).
    public var host: String
    /// The port number.
    public var port: Int

    /// A pair from its parts, as given (nothing is checked).
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Reads a `host:port` value; the error names the file, line and key.
    public init(node: ConfigNode) throws {
        guard let parsed = HostPort(parsing: try node.string()) else {
            throw node.error("expected host:port, e.g. 127.0.0.1:9001")
        }
        self = parsed
    }

    /// Parses `host:port` or `[v6]:port`.
    public init?(parsing text: String) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else { return nil }
        self.host = String(host)
        self.port = port
    }

    /// True for 127.0.0.0/8, `::1` and `localhost`.
    public var isLoopback: Bool {
        if host == "localhost" || host == "::1" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    /// `host:port`, with the host in brackets when it contains a colon (IPv6).
    public var description: String { host.utf8.contains(UInt8(ascii: ":")) ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
