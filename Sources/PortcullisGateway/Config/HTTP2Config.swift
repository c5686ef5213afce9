import PortcullisConfig

/// HTTP/2 from clients (`http2:`): offered as ALPN `h2` on a TLS listener and detected by its
/// connection preface (prior knowledge, `h2c`) on a plaintext one, so one port serves HTTP/1.1
/// and HTTP/2. The limits are sent to clients in the connection's SETTINGS and enforced by
/// swift-nio-http2; the header list limit is `limits.max_header_bytes`.
public struct HTTP2Config: Sendable {
    /// Whether the listener speaks HTTP/2 at all. Default true.
    public var enabled = true
    /// Streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS); a client
    /// opening more has them refused. Default 100.
    public var maxConcurrentStreams = 100
    /// The HPACK dynamic table the gateway keeps per connection for the client's headers
    /// (SETTINGS_HEADER_TABLE_SIZE). Default 4 KiB.
    public var headerTableSize = 4096
    /// The flow-control window of each stream and of the connection: the request bytes a client
    /// may send ahead of the upstream taking them. Default 64 KiB.
    public var initialWindowSize = 65_535
    /// WebSockets over HTTP/2 (RFC 8441): SETTINGS_ENABLE_CONNECT_PROTOCOL is sent, and an
    /// extended CONNECT with `:protocol: websocket` on a `websocket` route is carried like an
    /// HTTP/1.1 upgrade. Off, a client's extended CONNECT is a stream error. Default true.
    public var extendedConnect = true

    init() {}

    init(node: ConfigNode) throws {
        if node.isScalar {
            enabled = try node.bool()
            return
        }
        var map = try node.mapping()
        if let v = map.optional("enabled") { enabled = try v.bool() }
        if let v = map.optional("max_concurrent_streams") { maxConcurrentStreams = try v.int(in: 1...10_000) }
        if let v = map.optional("header_table_size") {
            headerTableSize = try v.byteCount()
            guard headerTableSize <= 1 << 20 else { throw v.error("http2.header_table_size must be at most 1MiB") }
        }
        if let v = map.optional("initial_window_size") {
            initialWindowSize = try v.byteCount()
            // RFC 9113 §6.5.2: at most 2^31-1; below 1 KiB a stream crawls.
            guard (1024...Int(Int32.max)).contains(initialWindowSize) else {
                throw v.error("http2.initial_window_size must be between 1KiB and 2147483647 bytes")
            }
        }
        if let v = map.optional("extended_connect") { extendedConnect = try v.bool() }
        try map.finish()
    }
}
