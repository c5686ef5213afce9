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
        /// `Host`) once `_` (and any other character than a letter, a digit or `-`) is read as `-`.
        case allow
    }

    /// How a rate-limited route states its limit on responses.
    public enum RateLimitHeaders: String, Sendable, CaseIterable {
        /// The IETF httpapi draft's structured fields (draft-ietf-httpapi-ratelimit-headers-09):
        /// `RateLimit-Policy: "name";q=100;w=60` and `RateLimit: "name";r=42;t=17`.
        case draft
        /// The earlier drafts' `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and
        /// `RateLimit-Policy: 100;w=60`, for clients written against them.
        case legacy
    }

    public var path = PathPolicy()
    public var headersWithUnderscores = UnderscoreHeaders.drop
    public var rateLimitHeaders = RateLimitHeaders.draft

    public init() {}

    init(node: ConfigNode) throws {
        var map = try node.mapping()
        if let v = map.optional("path") { path = try PathPolicy(node: v) }
        if let v = map.optional("headers_with_underscores") { headersWithUnderscores = try v.choice(UnderscoreHeaders.self) }
        if let v = map.optional("rate_limit_headers") { rateLimitHeaders = try v.choice(RateLimitHeaders.self) }
        try map.finish()
    }
}
