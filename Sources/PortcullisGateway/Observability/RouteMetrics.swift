import NIOHTTP1
import PortcullisObservability
import Prometheus
import Synchronization

/// Per-route handles, created once when a route table is built.
final class RouteMetrics: Sendable {
    let route: String
    private let registry: PrometheusCollectorRegistry
    /// By method and exact status (`methodIndex << 16 | status`), made on first use. A lock and a
    /// dictionary lookup — but only when a connection's response differs in route, method or code
    /// from its last one (`ResponseCounterCache`); otherwise the counter is reused without either.
    private let requests = Mutex<[Int: Counter]>([:])
    private let authOK: Counter
    private let authRejections = Mutex<[String: Counter]>([:])
    /// Counters of `portcullis_auth_client_rejections_total` by reason and client, and the
    /// distinct clients seen on this route (at most `maxClients`; the rest share `other`).
    private let clientRejections = Mutex<(counters: [String: Counter], clients: Set<String>)>(([:], []))
    /// Client ids come from tokens an issuer signed, but an issuer with dynamic client
    /// registration could mint any number: past this many per route they are counted as `other`.
    static let maxClients = 100
    let requestDuration: ValueHistogram
    let upstreamDuration: ValueHistogram

    /// Methods counted under their own name; any other (a client may send any token) is `other`,
    /// so clients cannot grow the label set.
    static let methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"]

    init(route: String, registry: PrometheusCollectorRegistry) {
        self.route = route
        self.registry = registry
        authOK = registry.counter("portcullis_auth_decisions_total", labels: [("route", route), ("reason", "ok")], help: Self.authDecisionsHelp)
        requestDuration = registry.valueHistogram("portcullis_http_request_duration_seconds", labels: [("route", route)], buckets: GatewayMetrics.latencyBuckets,
            help: "Time from the request head to the last response byte, by route.")
        upstreamDuration = registry.valueHistogram("portcullis_upstream_duration_seconds", labels: [("route", route)], buckets: GatewayMetrics.latencyBuckets,
            help: "Time from sending the request upstream to its last response byte, by route.")
    }

    private static let authDecisionsHelp = "Authentication decisions by route and outcome: ok, or the reason code of the rejection."

    /// Counts one response by method and status code: the exact code when it is a registered one
    /// (or 499, the gateway's "client closed"), else its class (`4xx`), so that an upstream
    /// answering arbitrary codes cannot grow the series. `cache` is the caller's (one per
    /// connection): the counter of its last response, reused while route, method and code stay
    /// the same.
    func countResponse(method: String, status: Int, cache: inout ResponseCounterCache?) {
        let methodIndex = Self.methods.firstIndex(of: method) ?? Self.methods.count
        let key = methodIndex << 16 | min(max(status, 100), 599)
        if let cached = cache, cached.route === self, cached.key == key {
            cached.counter.increment()
            return
        }
        let code = Self.codeLabel(status)
        let counter = GatewayMetrics.counter(in: requests, key: methodIndex << 16 | code) {
            registry.counter("portcullis_http_requests_total",
                             labels: [("route", route), ("method", methodIndex < Self.methods.count ? Self.methods[methodIndex] : "other"),
                                      ("code", code >= 1000 ? "\(code - 1000)xx" : String(code))],
                             help: "Requests answered, by route, method and status code.")
        }
        cache = ResponseCounterCache(route: self, key: key, counter: counter)
        counter.increment()
    }

    /// The code counted for `status`: itself when registered (NIO names it) or 499; otherwise
    /// its class as 1000 + the class digit (written `Nxx`), the status clamped to 100...599 first.
    static func codeLabel(_ status: Int) -> Int {
        let code = min(max(status, 100), 599)
        if code == 499 { return code }
        if case .custom = HTTPResponseStatus(statusCode: code) { return 1000 + code / 100 }
        return code
    }

    /// A token accepted on this route.
    func authAccepted() {
        authOK.increment()
    }

    /// A request refused by authentication, by reason code; `client` is the client id of a token
    /// whose signature verified (see `AuthFailure.client`), counted apart to show token misuse.
    func authRejected(_ reason: String, client: String?) {
        GatewayMetrics.counter(in: authRejections, key: reason) {
            registry.counter("portcullis_auth_decisions_total", labels: [("route", route), ("reason", reason)], help: Self.authDecisionsHelp)
        }.increment()
        guard let client else { return }
        clientRejections.withLock { state in
            if !state.clients.contains(client), state.clients.count < Self.maxClients { state.clients.insert(client) }
            let label = state.clients.contains(client) ? client : "other"
            let key = reason + "\u{0}" + label
            if let existing = state.counters[key] { return existing }
            let created = registry.counter("portcullis_auth_client_rejections_total", labels: [("route", route), ("client", label), ("reason", reason)],
                                           help: "Requests refused although the token's signature verified (revoked, certificate_binding, insufficient_scope, ...), by route, the token's client id (past 100 clients per route: other) and reason.")
            state.counters[key] = created
            return created
        }.increment()
    }
}

/// The response counter a connection used last (`RouteMetrics.countResponse`).
struct ResponseCounterCache {
    fileprivate let route: RouteMetrics
    fileprivate let key: Int
    fileprivate let counter: Counter
}
