import PortcullisCluster
import PortcullisJOSE
import Synchronization

/// What every connection of a node shares: the route table in force (with the authenticator),
/// the rate limiter, metrics, the access log and the tracer. Only the route table changes (on SIGHUP).
final class GatewayContext: Sendable {
    let metrics: GatewayMetrics
    let rateLimiter: any RateLimiting
    let accessLog: AccessLog?
    /// Spans for requests; nil when `tracing` is off.
    let tracing: RequestTracing?
    /// Metrics for requests that matched no route (404, 405, 400).
    let unmatchedRoute: RouteMetrics
    /// Set while the node is overloaded (`MemoryGuard`): new connections and requests are refused.
    let overload: OverloadFlag
    /// Open WebSockets and gRPC calls with the tokens they were admitted with (ended when those end).
    let sessions: LiveSessions
    /// The table and its version, bumped by every reload; `tableVersion` repeats the version so
    /// that readers can see a table is current without the lock.
    private let table: Mutex<(version: UInt64, routes: RouteTable)>
    private let tableVersion = Atomic<UInt64>(0)

    init(routes: RouteTable, metrics: GatewayMetrics, revocation: (any RevocationCheck)?, keys: KeySetStore? = nil, rateLimiter: any RateLimiting,
         accessLog: AccessLog?, tracing: RequestTracing? = nil, overload: OverloadFlag = OverloadFlag()) {
        self.overload = overload
        self.table = Mutex((0, routes))
        self.metrics = metrics
        self.rateLimiter = rateLimiter
        self.accessLog = accessLog
        self.tracing = tracing
        self.unmatchedRoute = metrics.route("_unmatched")
        self.sessions = LiveSessions(revocation: revocation, keys: keys, registry: metrics.registry)
    }

    /// The routes in force, for rare readers (a scrape of `/metrics`).
    var routeTable: RouteTable { table.withLock { $0.routes } }

    /// The routes in force (a request keeps the table it started with), for a reader that keeps the last table it got in `cached` (one per
    /// connection): an atomic load per call, and the lock only after a reload. Every request
    /// reads the table, and an uncontended lock and unlock cost more than the whole check.
    /// (`PublishedValue` does the same per thread, but inside PortcullisCluster: called from this
    /// module its generic `read` would run unspecialised.)
    func routeTable(cached: inout CachedRouteTable?) -> RouteTable {
        let current = tableVersion.load(ordering: .acquiring)
        if let cached, cached.version == current { return cached.routes }
        let latest = table.withLock { $0 }
        cached = CachedRouteTable(version: latest.version, routes: latest.routes)
        return latest.routes
    }

    func replaceRoutes(_ routes: RouteTable) {
        table.withLock { current in
            current = (current.version + 1, routes)
            tableVersion.store(current.version, ordering: .releasing)
        }
    }
}

/// A connection's copy of the route table it read last (`GatewayContext.routeTable(cached:)`).
struct CachedRouteTable {
    fileprivate let version: UInt64
    fileprivate let routes: RouteTable
}
