import PortcullisConfig

/// Limits that keep one client from exhausting the node.
public struct ServerLimits: Sendable {
    /// Request line plus all header fields. Default 32 KiB.
    public var maxHeaderBytes = 32 * 1024
    /// Open client connections; more are accepted and closed at once. Default 10 000.
    public var maxConnections = 10_000
    /// Time to receive a complete request head (slowloris). Default 10 s.
    public var headerReadTimeout: Duration = .seconds(10)
    /// Keep-alive connections with no request in flight are closed after this long. Default 60 s.
    public var idleTimeout: Duration = .seconds(60)
    /// On SIGTERM, in-flight requests get this long to finish. Default 30 s.
    public var drainTimeout: Duration = .seconds(30)
    /// The slowest a request body may arrive, in bytes per second of time spent waiting for it
    /// (after `requestBodyGrace`); slower gets 408 and the connection closed. 0 turns the check
    /// off. Default 256.
    public var requestBodyMinRate = 256
    /// Waiting time a request body is allowed before the minimum rate applies. Default 10 s.
    public var requestBodyGrace: Duration = .seconds(10)
    /// How long a client may leave response bytes untaken (the connection's buffer over its
    /// high-water mark) before the connection is closed. Default 60 s.
    public var responseWriteTimeout: Duration = .seconds(60)

    init() {}

    init(node: ConfigNode) throws {
        var map = try node.mapping()
        if let v = map.optional("max_header_bytes") { maxHeaderBytes = try v.byteCount() }
        if let v = map.optional("max_connections") { maxConnections = try v.int(in: 1...1_000_000) }
        if let v = map.optional("header_read_timeout") { headerReadTimeout = try v.duration() }
        if let v = map.optional("idle_timeout") { idleTimeout = try v.duration() }
        if let v = map.optional("drain_timeout") { drainTimeout = try v.duration() }
        if let v = map.optional("request_body_min_rate") { requestBodyMinRate = try v.byteCount() }
        if let v = map.optional("request_body_grace") { requestBodyGrace = try v.duration() }
        if let v = map.optional("response_write_timeout") {
            responseWriteTimeout = try v.duration()
            guard responseWriteTimeout > .zero else { throw v.error("limits.response_write_timeout must be more than 0s") }
        }
        try map.finish()
        guard maxHeaderBytes >= 1024 else { throw node.error("limits.max_header_bytes must be at least 1KiB") }
    }
}
