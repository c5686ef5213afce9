import PortcullisObservability
import Prometheus
import Synchronization

/// The control plane's metrics, on the registry `/metrics` serves. Names follow Prometheus
/// conventions; a name gateways export too means the same on both (and keeps the help text of
/// `MetricCatalog`), and the cluster-wide views get names of their own (`portcullis_cluster_*`),
/// so sums across jobs never mix the two.
final class ControlMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    let liveNodes: Gauge
    let nodesInFallback: Gauge
    let redisConnected: Gauge
    let revocationSequence: Gauge
    let propagation: DurationHistogram
    let refreshTokenReuse: Prometheus.Counter
    let authorizationCodeReuse: Prometheus.Counter
    /// Audit entries of refused admin calls left out by `AuditFailureLimiter`.
    let auditSuppressed: Prometheus.Counter
    /// RFC 7009 revocations refused over a client's `revocations_per_client`.
    let tokenRevocationThrottled: Prometheus.Counter
    private let perNode = Mutex<[String: (sequences: Gauge, seconds: Gauge)]>([:])
    private let perIssuer = Mutex<[String: Gauge]>([:])

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        liveNodes = registry.gauge("portcullis_cluster_live_nodes", help: Self.help("portcullis_cluster_live_nodes"))
        nodesInFallback = registry.gauge("portcullis_cluster_nodes_ratelimit_fallback",
                                         help: "Live gateway nodes enforcing rate limits in fallback mode (Redis unreachable from the node).")
        redisConnected = registry.gauge("portcullis_redis_connected", help: Self.help("portcullis_redis_connected"))
        revocationSequence = registry.gauge("portcullis_revocation_sequence",
                                            help: "Sequence number of the latest revocation change in Redis.")
        propagation = registry.durationHistogram(
            "portcullis_cluster_revocation_propagation_seconds",
            buckets: MetricCatalog.durationBuckets["portcullis_revocation_propagation_seconds"] ?? [.milliseconds(1), .seconds(1)],
            help: "Time from a revocation's durable write in Redis to a gateway applying it, from every gateway's acknowledgement (the cluster-wide view of each node's portcullis_revocation_propagation_seconds).")
        refreshTokenReuse = registry.counter("portcullis_refresh_token_reuse_total",
                                             help: "Refresh tokens presented again after rotation; each revoked its whole family.")
        authorizationCodeReuse = registry.counter("portcullis_authorization_code_reuse_total",
                                                  help: "Authorization codes presented again after redemption; each revoked the tokens issued from it.")
        auditSuppressed = registry.counter("portcullis_admin_audit_suppressed_total",
                                           help: "Audit entries of admin calls refused for want of a valid credential that were left out by the rate limit.")
        tokenRevocationThrottled = registry.counter("portcullis_oauth_revocations_throttled_total",
                                                    help: "RFC 7009 revocations refused (503) because their client made more than revocations_per_client in a minute.")
    }

    private static func help(_ name: String) -> String {
        MetricCatalog.help[name] ?? name
    }

    /// One admin API request, by method, route template and status.
    func adminRequest(method: String, route: String, status: Int) {
        registry.counter("portcullis_admin_requests_total", labels: [("method", method), ("route", route), ("status", String(status))],
                         help: "Admin API requests by method, route and status code.").increment()
    }

    /// One admin API call refused for want of a valid credential, by what it presented (`none`, `invalid`).
    func adminAuthFailure(credential: String) {
        registry.counter("portcullis_admin_auth_failures_total", labels: [("credential", credential)],
                         help: "Admin API calls refused for want of a valid credential, by what was presented (none, invalid).").increment()
    }

    /// One revocation change made durable, by kind (jti, subject, client, grant, key, session) and operation (add, delete).
    func revocation(kind: String, operation: String) {
        registry.counter("portcullis_revocations_total", labels: [("kind", kind), ("operation", operation)],
                         help: "Revocation changes written by this control plane, by kind and operation.").increment()
    }

    /// One JWKS fetch, by issuer and outcome (ok, http_error, network_error, invalid).
    func jwksFetch(issuer: String, outcome: String) {
        registry.counter("portcullis_jwks_fetch_total", labels: [("issuer", issuer), ("outcome", outcome)],
                         help: Self.help("portcullis_jwks_fetch_total")).increment()
    }

    /// One token-endpoint answer, by grant type and outcome (issued or the OAuth error code).
    func tokenRequest(grantType: String, outcome: String) {
        registry.counter("portcullis_oauth_token_requests_total", labels: [("grant_type", grantType), ("outcome", outcome)],
                         help: "Token endpoint requests of the built-in authorization server, by grant type and outcome.").increment()
    }

    /// One sign-in attempt at the login page, by outcome (success, failure, throttled).
    func login(outcome: String) {
        registry.counter("portcullis_login_attempts_total", labels: [("outcome", outcome)],
                         help: "Sign-in attempts at the authorization server's login page, by outcome (success, failure, throttled).").increment()
    }

    func signingKeyRotation(trigger: String) {
        registry.counter("portcullis_signing_key_rotations_total", labels: [("trigger", trigger)],
                         help: "Signing-key rotations of the built-in authorization server, by trigger (admin, schedule).").increment()
    }

    /// Revocation lag of each live node; gauges of nodes that left are removed.
    func setNodeLags(_ lags: [String: (sequences: Int64, seconds: Double)]) {
        perNode.withLock { gauges in
            for (node, lag) in lags {
                let pair = gauges[node] ?? (
                    registry.gauge("portcullis_node_revocation_lag_sequences", labels: [("node", node)],
                                   help: "Revocation changes a live gateway node has not applied yet."),
                    registry.gauge("portcullis_node_revocation_lag_seconds", labels: [("node", node)],
                                   help: "Age of the oldest revocation change a live gateway node has not applied yet (0 when in step)."))
                gauges[node] = pair
                pair.sequences.set(Double(lag.sequences))
                pair.seconds.set(lag.seconds)
            }
            for (node, pair) in gauges where lags[node] == nil {
                registry.unregisterGauge(pair.sequences)
                registry.unregisterGauge(pair.seconds)
                gauges[node] = nil
            }
        }
    }

    /// Seconds since each issuer's key set in Redis was last fetched (or, for the built-in
    /// issuer, published).
    func setKeySetAges(_ ages: [String: Double]) {
        perIssuer.withLock { gauges in
            for (issuer, age) in ages {
                let gauge = gauges[issuer] ?? registry.gauge("portcullis_cluster_keyset_age_seconds", labels: [("issuer", issuer)],
                                                             help: "Seconds since the issuer's key set in Redis was fetched (or, for the built-in issuer, published).")
                gauges[issuer] = gauge
                gauge.set(age)
            }
        }
    }
}
