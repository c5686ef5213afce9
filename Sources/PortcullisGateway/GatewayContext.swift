import PortcullisCluster
import Synchronization

/// What every connection of a node shares: the route table in force, the authenticator, the
/// rate limiter, metrics and the access log. Only the route table changes (on SIGHUP).
final class GatewayContext: Sendable {
    let metrics: GatewayMetrics
    let authenticator: Authenticator?
    let rateLimiter: any RateLimiting
    let realm: String
    let accessLog: AccessLog?
    /// Metrics for requests that matched no route (404, 405, 400).
    let unmatchedRoute: RouteMetrics
    private let table: Mutex<RouteTable>

    init(routes: RouteTable, metrics: GatewayMetrics, authenticator: Authenticator?, rateLimiter: any RateLimiting,
         realm: String, accessLog: AccessLog?) {
        self.table = Mutex(routes)
        self.metrics = metrics
        self.authenticator = authenticator
        self.rateLimiter = rateLimiter
        self.realm = realm
        self.accessLog = accessLog
        self.unmatchedRoute = metrics.route("_unmatched")
    }

    /// The routes in force; a request keeps the table it started with.
    var routeTable: RouteTable { table.withLock { $0 } }

    func replaceRoutes(_ routes: RouteTable) {
        table.withLock { $0 = routes }
    }
}
