import PortcullisConfig

/// The `http:` section: how the gateway reads a client's request head before routing it.
public struct RequestPolicy: Sendable, Equatable {
    /// Header names with `_`. CGI, WSGI, Rack, PHP and nginx's `$http_*` map `_` and `-` to the
    /// same name, so `X_Auth_Subject` reaches such an application as `X-Auth-Subject`.
    public enum UnderscoreHeaders: String, Sendable, CaseIterable {
        /// Removed before forwarding and counted (the default, as nginx's
        /// `underscores_in_headers off` and Envoy's `DROP_HEADER`).
        case drop
        /// The request is refused with 400.
        case reject
        /// Forwarded, except those that equal a removed header (identity, hop-by-hop, framing,
        /// `Host`) once `_` is read as `-`.
        case allow
    }

    public var path = PathPolicy()
    public var headersWithUnderscores = UnderscoreHeaders.drop

    public init() {}

    init(node: ConfigNode) throws {
        var map = try node.mapping()
        if let v = map.optional("path") { path = try PathPolicy(node: v) }
        if let v = map.optional("headers_with_underscores") { headersWithUnderscores = try v.choice(UnderscoreHeaders.self) }
        try map.finish()
    }
}
