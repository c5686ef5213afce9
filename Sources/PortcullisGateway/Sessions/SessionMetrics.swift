import NIOCore
import Prometheus
import Synchronization

/// `portcullis_sessions_open{protocol}`, `portcullis_sessions_closed_total{protocol,reason}` and
/// `portcullis_token_end_close_seconds{protocol,reason}`. Each series appears with its first
/// event. Opening a session takes one lock (to find or make its protocol's gauge, which the
/// session keeps and moves atomically), ending one another (the counter of its protocol and
/// reason, found by index): uncontended, no string built or hashed.
final class SessionMetrics: Sendable {
    private let registry: PrometheusCollectorRegistry
    private let openGauges = Mutex<[Gauge?]>(Array(repeating: nil, count: SessionProtocol.allCases.count))
    private let closedCounters = Mutex<[Counter?]>(
        Array(repeating: nil, count: SessionProtocol.allCases.count * LiveSessions.EndReason.allCases.count))
    private let tokenEndHistograms = Mutex<[ValueHistogram?]>(Array(repeating: nil, count: SessionProtocol.allCases.count * 2))
    /// A revoked token's connections are to close within 10 ms of the node learning of it: the
    /// buckets resolve around that bound.
    static let tokenEndBuckets: [Double] = [0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    /// Counts a session of `name` open and returns its gauge, for `closed` to take it down.
    func opened(protocol name: SessionProtocol) -> Gauge {
        let gauge = openGauges.withLock { gauges in
            if let existing = gauges[name.index] { return existing }
            let created = registry.gauge("portcullis_sessions_open", labels: [("protocol", name.rawValue)],
                                         help: "Long-lived sessions (WebSockets, gRPC calls, HTTP/2 streams) open now, by protocol.")
            gauges[name.index] = created
            return created
        }
        gauge.increment()
        return gauge
    }

    func closed(_ session: LiveSession, reason: LiveSessions.EndReason) {
        session.openGauge.decrement()
        let name = session.protocolName
        let counter = closedCounters.withLock { counters in
            let index = name.index * LiveSessions.EndReason.allCases.count + reason.index
            if let existing = counters[index] { return existing }
            let created = registry.counter(
                "portcullis_sessions_closed_total", labels: [("protocol", name.rawValue), ("reason", reason.rawValue)],
                help: "Long-lived sessions (WebSockets, gRPC calls, HTTP/2 streams) ended, by protocol and reason: token_revoked, token_expired, idle_timeout, max_lifetime, too_large, protocol_error, client, upstream, draining, client_trust_replaced.")
            counters[index] = created
            return created
        }
        counter.increment()
    }

    /// A session closed because its token ended, `elapsed` after the node learned of it (the
    /// revocation applied, or `exp` plus leeway due).
    func closedForToken(protocol name: SessionProtocol, end: LiveSessions.TokenEnd, after elapsed: TimeAmount) {
        let histogram = tokenEndHistograms.withLock { histograms in
            let index = name.index * 2 + (end == .revoked ? 0 : 1)
            if let existing = histograms[index] { return existing }
            let created = registry.valueHistogram(
                "portcullis_token_end_close_seconds", labels: [("protocol", name.rawValue), ("reason", end.reason.rawValue)],
                buckets: Self.tokenEndBuckets,
                help: "Time from this node learning that a token ended (a revocation applied, or exp plus leeway due) to closing a long-lived session admitted with it, by protocol and reason (token_revoked, token_expired).")
            histograms[index] = created
            return created
        }
        histogram.record(GatewayMetrics.seconds(elapsed))
    }
}

extension SessionProtocol {
    /// Its place in `allCases` (a switch: `allCases` builds an array on every use).
    var index: Int {
        switch self {
        case .websocket: 0
        case .grpc: 1
        case .h2: 2
        case .http1: 3
        }
    }
}

extension LiveSessions.EndReason {
    /// Its place in `allCases` (a switch: `allCases` builds an array on every use).
    var index: Int {
        switch self {
        case .tokenRevoked: 0
        case .tokenExpired: 1
        case .idleTimeout: 2
        case .maxLifetime: 3
        case .tooLarge: 4
        case .protocolError: 5
        case .client: 6
        case .upstream: 7
        case .draining: 8
        case .clientTrustReplaced: 9
        }
    }
}
