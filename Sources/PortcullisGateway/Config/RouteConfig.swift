import PortcullisConfig
import PortcullisJOSE

/// One entry of `routes:`. Matched by host, then longest path prefix, then method.
public struct RouteConfig: Sendable {
    public var name: String
    /// Exact `Host` (port ignored, case-insensitive); nil matches any host.
    public var host: String?
    /// Path prefix on a segment boundary: `/api` matches `/api` and `/api/x`, not `/apix`.
    public var pathPrefix: String
    /// Allowed methods (upper case); nil allows all.
    public var methods: Set<String>?
    /// Remove `pathPrefix` before forwarding.
    public var stripPrefix: Bool
    public var upstream: UpstreamConfig
    public var auth: RouteAuth
    /// Remove `Authorization` before forwarding (the upstream gets identity headers only).
    public var stripAuthorization: Bool
    /// Only requests over a connection with a verified client certificate (`tls.client_ca`).
    public var requireClientCertificate: Bool
    /// Name of a rate-limit policy under `rate_limits:`.
    public var rateLimit: String?
    /// Largest request body accepted; larger ones get 413. Default 16 MiB.
    public var maxBodyBytes: Int
    public var requestHeaders: HeaderRules
    public var responseHeaders: HeaderRules
    /// WebSocket upgrades and their limits; nil refuses upgrades (`websocket:`).
    public var websocket: WebSocketRouteConfig?
    /// What happens to a WebSocket, gRPC call, HTTP/2 stream or long HTTP/1.1 response when its
    /// token is revoked or expires (`on_token_end`).
    public var onTokenEnd: TokenEndPolicy
    /// Cross-origin access for browsers (`cors:`); nil answers preflights like any request.
    public var cors: CORSConfig?

    /// A route's `host`, in the form the router compares requests' with (`HostHeader.routeName`);
    /// anything else is a configuration error naming the line, since it would match no request.
    private static func hostName(_ node: ConfigNode) throws -> String {
        let raw = try node.nonEmptyString()
        guard let name = HostHeader.routeName(raw) else {
            throw node.error("host must be a host name as clients send it, without port, wildcard or trailing dot (api.example.com, or [::1]): '\(raw)' would match no request")
        }
        return name
    }

    init(node: ConfigNode, baseDirectory: String) throws {
        var map = try node.mapping()
        name = try map.required("name").nonEmptyString()
        if let hostNode = map.optional("host") {
            host = try Self.hostName(hostNode)
        } else {
            host = nil
        }
        let prefixNode = map.optional("path_prefix")
        let prefix = try prefixNode?.string() ?? "/"
        guard prefix.hasPrefix("/") else { throw (prefixNode ?? node).error("path_prefix must start with '/'") }
        pathPrefix = prefix.count > 1 && prefix.hasSuffix("/") ? String(prefix.dropLast()) : prefix
        if let methodsNode = map.optional("methods") {
            let list = try methodsNode.stringList().map { $0.uppercased() }
            guard !list.isEmpty, list.allSatisfy(HeaderName.isValid) else { throw methodsNode.error("expected a list of HTTP methods") }
            methods = Set(list)
        } else {
            methods = nil
        }
        stripPrefix = try map.optional("strip_prefix")?.bool() ?? false
        upstream = try UpstreamConfig(node: map.required("upstream"), baseDirectory: baseDirectory)
        auth = try map.optional("auth").map(RouteAuth.init(node:)) ?? .none
        requireClientCertificate = try map.optional("require_client_certificate")?.bool() ?? false
        if let v = map.optional("strip_authorization") {
            stripAuthorization = try v.bool()
        } else {
            stripAuthorization = false
        }
        rateLimit = try map.optional("rate_limit")?.nonEmptyString()
        maxBodyBytes = try map.optional("max_body_bytes")?.byteCount() ?? 16 * 1024 * 1024
        requestHeaders = try map.optional("request_headers").map(HeaderRules.init(node:)) ?? HeaderRules()
        responseHeaders = try map.optional("response_headers").map(HeaderRules.init(node:)) ?? HeaderRules()
        if let node = map.optional("websocket") {
            websocket = try WebSocketRouteConfig.parse(node)
            // A WebSocket is relayed over an HTTP/1.1 connection of its own; an HTTP/2 route's
            // upstream speaks HTTP/2 only (and its HTTP/1.1 clients are refused with 505).
            if websocket != nil, upstream.protocol != .http1 {
                throw node.error("websocket needs an HTTP/1.1 upstream; this route's upstream.protocol is \(upstream.protocol.rawValue)")
            }
        }
        onTokenEnd = try map.optional("on_token_end").map(TokenEndPolicy.parse) ?? .close
        cors = try map.optional("cors").map(CORSConfig.init(node:))
        try map.finish()
    }
}
