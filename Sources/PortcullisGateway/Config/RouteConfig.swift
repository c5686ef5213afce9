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
    /// What happens to a WebSocket when its token is revoked or expires (`on_token_end`).
    public var onTokenEnd: TokenEndPolicy
    /// Cross-origin access for browsers (`cors:`); nil answers preflights like any request.
    public var cors: CORSConfig?

    init(node: ConfigNode, baseDirectory: String) throws {
        var map = try node.mapping()
        name = try map.required("name").nonEmptyString()
        host = try map.optional("host")?.nonEmptyString().lowercased()
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
        websocket = try map.optional("websocket").flatMap(WebSocketRouteConfig.parse)
        onTokenEnd = try map.optional("on_token_end").map(TokenEndPolicy.parse) ?? .close
        cors = try map.optional("cors").map(CORSConfig.init(node:))
        try map.finish()
    }
}

/// How a route authenticates requests.
public enum RouteAuth: Sendable {
    /// Anyone may call the route; no identity is forwarded (client-supplied identity headers are still removed).
    case none
    /// A valid bearer JWT is required.
    case jwt(JWTRouteAuth)

    init(node: ConfigNode) throws {
        var map = try node.mapping()
        let typeNode = try map.required("type")
        switch try typeNode.string() {
        case "none":
            try map.finish()
            self = .none
        case "jwt":
            var auth = JWTRouteAuth()
            if let v = map.optional("issuers") { auth.issuers = try v.stringList() }
            if let v = map.optional("scopes") { auth.scopes = try ScopeRequirement(node: v) }
            if let v = map.optional("claims") { auth.claims = try v.sequence().map(ClaimRule.init(node:)) }
            try map.finish()
            self = .jwt(auth)
        case let other:
            throw typeNode.error("auth type must be 'none' or 'jwt', got '\(other)'")
        }
    }
}

/// Requirements on a route's bearer token beyond a valid signature and claims.
public struct JWTRouteAuth: Sendable {
    /// Names of the issuers accepted on this route; nil accepts every configured issuer.
    public var issuers: [String]?
    public var scopes: ScopeRequirement?
    public var claims: [ClaimRule] = []
}

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

/// TLS from the gateway to an upstream.
public struct UpstreamTLSConfig: Sendable {
    /// PEM bundle of trusted roots; nil uses the system's.
    public var caFile: String?
    /// SNI and the name checked in the certificate; nil uses the target's host.
    public var serverName: String?
    /// Verify the upstream's certificate (default true). Turning it off is for tests only.
    public var verify = true

    init(node: ConfigNode, baseDirectory: String) throws {
        if node.isScalar {
            guard try node.bool() else { throw node.error("use `tls: true` or a mapping; omit the key to disable TLS") }
            return
        }
        var map = try node.mapping()
        caFile = try map.optional("ca_file").map { resolve(try $0.nonEmptyString(), against: baseDirectory) }
        serverName = try map.optional("server_name")?.nonEmptyString()
        if let v = map.optional("verify") { verify = try v.bool() }
        try map.finish()
    }
}

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
