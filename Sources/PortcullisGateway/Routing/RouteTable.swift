import Foundation
import NIOCore
import NIOSSL
import PortcullisCluster
import PortcullisJOSE
import Prometheus

/// A route ready for the request path: its config plus everything derived from it once.
final class CompiledRoute: Sendable {
    let config: RouteConfig
    let selector: UpstreamTargetSelector
    let upstream: UpstreamSettings
    let jwtAuth: CompiledJWTAuth?
    let rateLimit: RateLimitPolicy?
    let metrics: RouteMetrics
    /// How many of the route's targets are ejected (`RouteTable.recordEjectedTargets`).
    let ejectedTargets: Gauge
    let headerPolicy: HeaderRewriter.Policy
    /// The path prefix in lower case, for matching without regard to case.
    let lowercasedPathPrefix: [UInt8]
    /// The route's CORS rules, nil without a `cors` block.
    let cors: CORSPolicy?

    init(config: RouteConfig, policies: [String: RateLimitPolicy], identityHeaders: [IdentityHeader],
         underscores: RequestPolicy.UnderscoreHeaders, metrics: GatewayMetrics) throws {
        self.config = config
        self.lowercasedPathPrefix = Array(config.pathPrefix.lowercased().utf8)
        self.cors = config.cors.map(CORSPolicy.init)
        self.headerPolicy = HeaderRewriter.Policy(route: config, identityHeaders: identityHeaders, underscores: underscores)
        let ejections = metrics.upstreamEjections(route: config.name)
        self.selector = UpstreamTargetSelector(addresses: config.upstream.targets, ejections: ejections.ejections)
        self.ejectedTargets = ejections.ejected
        let upstream = config.upstream
        var tlsContext: NIOSSLContext?
        if let tls = upstream.tls {
            do {
                tlsContext = try UpstreamTLSContexts.shared.context(for: tls, http2: upstream.protocol == .h2)
            } catch {
                throw GatewayError.tls("route '\(config.name)': upstream.tls\(tls.caFile.map { " (ca_file \($0))" } ?? ""): cannot set up upstream TLS: \(error)")
            }
        }
        self.upstream = UpstreamSettings(
            connectTimeout: TimeAmount(upstream.connectTimeout),
            responseHeaderTimeout: TimeAmount(upstream.responseHeaderTimeout),
            idleTimeout: TimeAmount(upstream.idleTimeout),
            poolIdleTimeout: TimeAmount(upstream.poolIdleTimeout),
            maxIdlePerTarget: upstream.maxIdlePerTarget,
            ejectFor: upstream.ejectFor,
            tls: tlsContext,
            tlsServerName: upstream.tls?.serverName,
            http2: upstream.protocol != .http1
        )
        switch config.auth {
        case .none:
            jwtAuth = nil
        case .jwt(let auth):
            jwtAuth = CompiledJWTAuth(allowedIssuers: auth.issuers.map(Set.init), scopes: auth.scopes, claims: auth.claims)
        }
        rateLimit = config.rateLimit.flatMap { policies[$0] }
        self.metrics = metrics.route(config.name)
    }
}

/// Everything a request reads from the configuration: the routes, the request policy they are
/// matched under, and the authenticator (issuers, audiences, algorithms) their tokens are checked
/// by. Replaced as a whole on SIGHUP, so a request sees one configuration from start to end;
/// requests already routed keep their route.
final class RouteTable: Sendable {
    let routes: [CompiledRoute]
    let router: Router
    let request: RequestPolicy
    /// Checks the tokens of `jwt` routes; nil without issuers (the config then has no such route).
    let authenticator: Authenticator?
    /// `realm` in `WWW-Authenticate` challenges.
    let realm: String

    init(config: GatewayConfig, metrics: GatewayMetrics, authenticator: Authenticator? = nil) throws {
        routes = try config.routes.map {
            try CompiledRoute(config: $0, policies: config.rateLimitPolicies, identityHeaders: config.identityHeaders,
                              underscores: config.http.headersWithUnderscores, metrics: metrics)
        }
        router = Router(routes: routes, caseSensitive: config.http.path.caseSensitive)
        request = config.http
        self.authenticator = authenticator
        realm = config.realm
    }

    private init(routes: [CompiledRoute], router: Router, request: RequestPolicy, authenticator: Authenticator?, realm: String) {
        self.routes = routes
        self.router = router
        self.request = request
        self.authenticator = authenticator
        self.realm = realm
    }

    /// The same routes checked by `authenticator` (built once the reload can no longer fail: a
    /// verifier registers its issuers with the key store for readiness).
    func checking(with authenticator: Authenticator?) -> RouteTable {
        RouteTable(routes: routes, router: router, request: request, authenticator: authenticator, realm: realm)
    }

    /// Sets each route's ejected-targets gauge to the count at `now` (before a scrape).
    func recordEjectedTargets(now: NIODeadline = .now()) {
        for route in routes { route.ejectedTargets.set(Int64(route.selector.ejectedCount(now: now))) }
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
