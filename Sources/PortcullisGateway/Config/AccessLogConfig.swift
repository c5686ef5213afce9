import PortcullisConfig

/// The access log: one line per request through swift-log (label `portcullis.access`).
public struct AccessLogConfig: Sendable {
    public var enabled = true
    /// Whether `path` keeps the request's query string; off by default, because queries carry
    /// what logs should not keep (search terms, and from careless clients even tokens).
    public var query = false

    init() {}

    init(node: ConfigNode) throws {
        if node.isScalar {
            enabled = try node.bool()
            return
        }
        var map = try node.mapping()
        if let v = map.optional("enabled") { enabled = try v.bool() }
        if let v = map.optional("query") { query = try v.bool() }
        try map.finish()
    }
}
