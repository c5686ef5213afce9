import Foundation
import NIOCore
import PortcullisCluster
import PortcullisConfig
import PortcullisJOSE

/// Everything `portcullis gateway --config FILE` reads. Parsed once at start and again on SIGHUP;
/// every error names the file, line and key (see `ConfigError`).
public struct GatewayConfig: Sendable {
    /// Identifies this node in the cluster (membership, the control plane's per-node series,
    /// `portcullis_build_info{node}`). Default: `<hostname>-<listen port>`, the same across
    /// restarts; each process still signs its record and acknowledgements with a random instance,
    /// so a restarted node is never credited with what its predecessor applied (docs/model.md).
    public var nodeID: String {
        get { configuredNodeID ?? Self.defaultNodeID(listen: listen) }
        set { configuredNodeID = newValue }
    }
    /// `node_id` as configured (or `--node-id`); nil means the default.
    public var configuredNodeID: String?
    /// The public listener.
    public var listen: HostPort
    /// TLS on the public listener, when configured.
    public var tls: ListenerTLSConfig?
    /// Whom the public listener believes about the client's address (`trusted_proxies`).
    public var clientAddress: ClientAddressConfig
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`). Loopback by default.
    public var adminListen: HostPort
    /// Event-loop threads; default: one per core.
    public var eventLoops: Int
    public var limits: ServerLimits
    /// Shedding load when short of memory (`overload:`).
    public var overload: OverloadConfig
    /// How request targets and header names are checked before routing (`http:`).
    public var http: RequestPolicy
    /// HTTP/2 from clients (`http2:`).
    public var http2: HTTP2Config
    public var accessLog: AccessLogConfig
    /// OpenTelemetry spans (`tracing:`), off by default.
    public var tracing: TracingConfig
    /// Claim → request header forwarded to upstreams for verified tokens.
    public var identityHeaders: [IdentityHeader]
    /// `realm` in `WWW-Authenticate` challenges.
    public var realm: String
    /// Verified-token cache capacity (entries); 0 disables the cache.
    public var tokenCacheCapacity: Int
    public var issuers: [IssuerConfig]
    public var rateLimitPolicies: [String: RateLimitPolicy]
    public var routes: [RouteConfig]
    /// The link to the cluster's Redis (nil: a standalone node with local state only).
    public var cluster: ClusterConfig?
    /// The file this was read from; relative paths in it resolve against its folder.
    public var file: String
    /// The settings a reload cannot change, as written in `file` (docs/configuration.md, "Signals").
    public let startOnly: StartOnlySettings

    /// The top-level keys read only at start: the listeners and their pipelines, threads, the
    /// cluster link, the node's identity and the caches sized at start.
    static let startOnlyKeys: [StartOnlySettings.Key] = [
        .value("node_id"), .value("listen"), .value("admin_listen"), .value("event_loops"), .value("limits"), .value("overload"), .value("http2"),
        .value("proxy_protocol"), .value("access_log"), .value("token_cache"), .value("cluster"), .value("tracing"), .presence("tls"),
    ]

    /// Reads and validates a gateway configuration file.
    public static func load(file: String) throws -> GatewayConfig {
        try GatewayConfig(root: ConfigNode.load(file: file), file: file)
    }

    /// Parses a gateway configuration from YAML text (tests, `--check`).
    public static func parse(yaml: String, file: String) throws -> GatewayConfig {
        try GatewayConfig(root: ConfigNode.parse(yaml: yaml, file: file), file: file)
    }

    init(root: ConfigNode, file: String) throws {
        let baseDirectory = URL(fileURLWithPath: file).deletingLastPathComponent().path
        var map = try root.mapping()
        self.file = file
        self.startOnly = StartOnlySettings(root: root, keys: Self.startOnlyKeys)
        if let node = map.optional("node_id") {
            let id = try node.nonEmptyString()
            if let problem = NodeID.problem(id) { throw node.error(problem) }
            self.configuredNodeID = id
        }
        self.listen = try HostPort(node: map.required("listen"))
        self.tls = try map.optional("tls").map { try ListenerTLSConfig(node: $0, baseDirectory: baseDirectory) }
        self.clientAddress = try ClientAddressConfig(map: &map)
        self.adminListen = try map.optional("admin_listen").map(HostPort.init(node:)) ?? HostPort(host: "127.0.0.1", port: 9901)
        self.eventLoops = try map.optional("event_loops")?.int(in: 1...256) ?? System.coreCount
        self.limits = try map.optional("limits").map(ServerLimits.init(node:)) ?? ServerLimits()
        self.overload = try map.optional("overload").map(OverloadConfig.init(node:)) ?? OverloadConfig()
        self.http = try map.optional("http").map(RequestPolicy.init(node:)) ?? RequestPolicy()
        self.http2 = try map.optional("http2").map(HTTP2Config.init(node:)) ?? HTTP2Config()
        self.accessLog = try map.optional("access_log").map(AccessLogConfig.init(node:)) ?? AccessLogConfig()
        self.tracing = try map.optional("tracing").map { try TracingConfig(node: $0, baseDirectory: baseDirectory) } ?? TracingConfig()
        self.identityHeaders = try map.optional("identity_headers").map(IdentityHeader.list(node:)) ?? IdentityHeader.defaults
        self.realm = try map.optional("realm")?.nonEmptyString() ?? "portcullis"
        if let cacheNode = map.optional("token_cache") {
            var cache = try cacheNode.mapping()
            self.tokenCacheCapacity = try cache.optional("capacity")?.int(in: 0...10_000_000) ?? 100_000
            try cache.finish()
        } else {
            self.tokenCacheCapacity = 100_000
        }
        if let issuersNode = map.optional("issuers") {
            self.issuers = try IssuerConfig.list(from: issuersNode, baseDirectory: baseDirectory)
        } else {
            self.issuers = []
        }
        var policies: [String: RateLimitPolicy] = [:]
        for node in try map.optional("rate_limits")?.sequence() ?? [] {
            let policy = try RateLimitPolicy(node: node)
            guard policies[policy.name] == nil else { throw node.error("duplicate rate-limit policy name '\(policy.name)'") }
            policies[policy.name] = policy
        }
        self.rateLimitPolicies = policies
        self.cluster = try map.optional("cluster").map { node in
            let cluster = try ClusterConfig(node: node, baseDirectory: baseDirectory)
            // Gateways never write revocations: a durability setting here would be a silent no-op.
            var section = try node.mapping()
            if var revocation = try section.optional("revocation")?.mapping() {
                for key in ["required_replicas", "replica_timeout"] {
                    if let node = revocation.optional(key) { throw node.error("\(key) is a control-plane setting (gateways write no revocations)") }
                }
            }
            return cluster
        }

        let routesNode = try map.required("routes")
        var routes: [RouteConfig] = []
        let issuerNames = Set(issuers.map(\.name))
        for node in try routesNode.sequence() {
            let route = try RouteConfig(node: node, baseDirectory: baseDirectory)
            if routes.contains(where: { $0.name == route.name }) {
                throw node.error("duplicate route name '\(route.name)'")
            }
            if case .jwt(let auth) = route.auth {
                for name in auth.issuers ?? [] where !issuerNames.contains(name) {
                    throw node.error("route '\(route.name)' names issuer '\(name)', which is not under issuers:")
                }
                if issuerNames.isEmpty {
                    throw node.error("route '\(route.name)' requires jwt auth but no issuers are configured")
                }
            }
            if route.requireClientCertificate, (tls?.clientCertificates ?? .off) == .off {
                throw node.error("route '\(route.name)' requires a client certificate, but tls.client_ca is not set")
            }
            // Requests are matched after normalisation, so a prefix outside the normal form
            // (`/a//b`, `/%61`, `/a/../b`) could never match: say so rather than route nothing.
            guard case .success(let normal) = RequestTarget.normalize(route.pathPrefix.utf8, policy: http.path), normal == route.pathPrefix else {
                throw node.error("route '\(route.name)': path_prefix '\(route.pathPrefix)' is not in normal form (see http.path)")
            }
            if let policy = route.rateLimit, policies[policy] == nil {
                throw node.error("route '\(route.name)' names rate-limit policy '\(policy)', which is not under rate_limits:")
            }
            // The router takes the first of the routes with a host and prefix in file order: one
            // whose methods an earlier one's cover is never reached. A route added above another
            // (say a public `/orders` above the JWT one) would silently take its requests,
            // unauthenticated: that is a mistake to name, not a config to serve.
            let caseSensitive = http.path.caseSensitive
            if let earlier = routes.first(where: { Self.shadows($0, route, caseSensitive: caseSensitive) }) {
                throw node.error("route '\(route.name)' is never reached: route '\(earlier.name)' before it has the same host and path_prefix and takes its methods")
            }
            routes.append(route)
        }
        guard !routes.isEmpty else { throw routesNode.error("at least one route is required") }
        self.routes = routes
        try map.finish()
    }

    /// Whether `earlier`, being first in the file, takes every request `later` would match.
    static func shadows(_ earlier: RouteConfig, _ later: RouteConfig, caseSensitive: Bool) -> Bool {
        guard earlier.host == later.host else { return false }
        let samePrefix = caseSensitive ? earlier.pathPrefix == later.pathPrefix
            : earlier.pathPrefix.lowercased() == later.pathPrefix.lowercased()
        guard samePrefix else { return false }
        guard let taken = earlier.methods else { return true }
        guard let wanted = later.methods else { return false }
        return wanted.isSubset(of: taken)
    }

    /// The files holding this node's secrets, for the warning about their modes (`SecretFile`).
    public var secretFiles: [SecretFile] {
        (cluster?.secretFiles ?? []) + (tls.map { [SecretFile(key: "tls.private_key", path: $0.privateKey)] } ?? [])
    }

    /// `<hostname>-<port>`: the id survives a restart, so the membership registry and dashboards
    /// keep one entry and one series per node. Gateways on one host listening on one port at
    /// different addresses must set `node_id`. An ephemeral port (0) says nothing stable, so the
    /// process id stands in for it.
    static func defaultNodeID(listen: HostPort) -> String {
        let host = ProcessInfo.processInfo.hostName
        return listen.port == 0 ? "\(host)-\(ProcessInfo.processInfo.processIdentifier)" : "\(host)-\(listen.port)"
    }
}

func resolve(_ path: String, against baseDirectory: String) -> String {
    path.hasPrefix("/") ? path : URL(fileURLWithPath: baseDirectory).appendingPathComponent(path).path
}
