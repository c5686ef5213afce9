import PortcullisConfig

/// Where a route's requests go.
public struct UpstreamConfig: Sendable {
    /// The protocol the gateway speaks to the upstream.
    public enum UpstreamProtocol: String, Sendable, CaseIterable {
        /// HTTP/1.1, over TLS when `tls` is set.
        case http1
        /// HTTP/2 over TLS, agreed by ALPN (`tls` required).
        case h2
        /// HTTP/2 over plaintext with prior knowledge (`tls` not allowed).
        case h2c
    }

    public var targets: [HostPort]
    public var `protocol` = UpstreamProtocol.http1
    /// TLS to the upstream.
    public var tls: UpstreamTLSConfig?
    public var connectTimeout: Duration = .seconds(2)
    /// From the end of the request to the upstream's response head.
    public var responseHeaderTimeout: Duration = .seconds(30)
    /// No bytes either way on an upstream connection for this long ends the exchange (504 if no response yet).
    public var idleTimeout: Duration = .seconds(60)
    /// Idle pooled connections older than this are closed rather than reused.
    public var poolIdleTimeout: Duration = .seconds(30)
    /// Idle connections kept per target and event loop. Default 1024: it must cover the requests
    /// in flight at once (an HTTP/2 client's streams each take an HTTP/1.1 upstream connection),
    /// or every request beyond it opens and closes a connection.
    public var maxIdlePerTarget = 1024
    /// A target that fails to connect is skipped for this long.
    public var ejectFor: Duration = .seconds(10)

    init(node: ConfigNode, baseDirectory: String) throws {
        var map = try node.mapping()
        let targetsNode = try map.required("targets")
        targets = try targetsNode.stringList().map { text in
            guard let target = HostPort(parsing: text), target.port > 0 else {
                throw targetsNode.error("expected host:port targets, got '\(text)'")
            }
            return target
        }
        guard !targets.isEmpty else { throw targetsNode.error("at least one target is required") }
        tls = try map.optional("tls").map { try UpstreamTLSConfig(node: $0, baseDirectory: baseDirectory) }
        if let v = map.optional("protocol") {
            `protocol` = try v.choice(UpstreamProtocol.self)
            if `protocol` == .h2, tls == nil { throw v.error("protocol: h2 is HTTP/2 over TLS and needs upstream.tls (h2c is the plaintext form)") }
            if `protocol` == .h2c, tls != nil { throw v.error("protocol: h2c is HTTP/2 without TLS; with upstream.tls use h2") }
        }
        if let v = map.optional("connect_timeout") { connectTimeout = try v.duration() }
        if let v = map.optional("response_header_timeout") { responseHeaderTimeout = try v.duration() }
        if let v = map.optional("idle_timeout") { idleTimeout = try v.duration() }
        if let v = map.optional("pool_idle_timeout") { poolIdleTimeout = try v.duration() }
        if let v = map.optional("max_idle_per_target") { maxIdlePerTarget = try v.int(in: 0...10_000) }
        if let v = map.optional("eject_for") { ejectFor = try v.duration() }
        try map.finish()
    }
}
