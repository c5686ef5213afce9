import PortcullisConfig

/// A route's `websocket:` key: whether it accepts WebSocket upgrades (RFC 6455) and the limits on
/// each one. `websocket: true` takes the defaults; a mapping sets some and enables the route.
public struct WebSocketRouteConfig: Sendable {
    /// Largest frame payload accepted from either side; a larger one closes the WebSocket with 1009.
    public var maxFrameBytes = 1024 * 1024
    /// No frame either way for this long closes the WebSocket (1001).
    public var idleTimeout: Duration = .seconds(300)
    /// A WebSocket is closed (1001) once it has been open this long, whatever its traffic.
    public var maxLifetime: Duration = .seconds(24 * 3600)

    init() {}

    /// nil when the node says `false` (the route refuses upgrades).
    static func parse(_ node: ConfigNode) throws -> WebSocketRouteConfig? {
        if node.isScalar { return try node.bool() ? WebSocketRouteConfig() : nil }
        var config = WebSocketRouteConfig()
        var map = try node.mapping()
        if let v = map.optional("max_frame_bytes") {
            config.maxFrameBytes = try v.byteCount()
            guard (125...(1 << 30)).contains(config.maxFrameBytes) else { throw v.error("max_frame_bytes must be between 125 bytes and 1 GiB") }
        }
        if let v = map.optional("idle_timeout") {
            config.idleTimeout = try v.duration()
            guard config.idleTimeout > .zero else { throw v.error("idle_timeout must be positive") }
        }
        if let v = map.optional("max_lifetime") {
            config.maxLifetime = try v.duration()
            guard config.maxLifetime > .zero else { throw v.error("max_lifetime must be positive") }
        }
        try map.finish()
        return config
    }
}
