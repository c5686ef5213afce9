import NIOHTTP1
import NIOCore
import PortcullisObservability
import Prometheus
import Synchronization

/// The data plane's metrics, registered straight on the Prometheus registry (with help text, which
/// `promtool check metrics` requires) and resolved to handles once per route, so the request path
/// only does atomic adds.
public final class GatewayMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    private let rateLimitDecisions = Mutex<[String: Counter]>([:])
    private let upstreamFailures = Mutex<[String: Counter]>([:])
    private let routes = Mutex<[String: RouteMetrics]>([:])
    /// Time the gateway itself adds: request duration minus time spent waiting on the upstream.
    let addedLatency: ValueHistogram
    let openConnections: Gauge
    let rejectedConnections: Counter
    /// Requests whose header fields with `_` in the name were dropped.
    let underscoredFieldsDropped: Counter
    /// Connections cut because the client sent its request body too slowly.
    let slowRequestBodies: Counter
    /// Connections cut because the client did not take response bytes for `response_write_timeout`.
    let stalledResponseWrites: Counter
    /// Client connections by the protocol they turned out to speak.
    let http1Connections: Counter
    let http2Connections: Counter
    /// HTTP/2 streams reset because their request was malformed.
    let malformedHTTP2Streams: Counter
    /// HTTP/2 connections closed for a connection error (GOAWAY sent).
    let http2ConnectionErrors: Counter
    /// HTTP/2 streams reset because their connection's queued frames were over the limit
    /// (`HTTP2FrameQueues`): a client's streams, and streams to upstreams.
    let http2QueueResets: Counter
    let upstreamHTTP2QueueResets: Counter
    /// DATA frames joined away by `HTTP2DataFrameJoiner`: a client's, an upstream's.
    let http2DataFramesJoined: Counter
    let upstreamHTTP2DataFramesJoined: Counter
    let upstreamHTTP2ConnectionErrors: Counter
    let upstreamHTTP2StreamErrors: Counter
    let upstreamHTTP2StreamsResent: Counter
    let upstreamHTTP2ConnectionsRetired: Counter
    private let proxyProtocolInvalid: Counter
    /// The overload guard (`MemoryGuard`).
    let memoryResident: Gauge
    let memoryLimit: Gauge
    let overloaded: Gauge
    let overloadRefusedConnections: Counter
    let overloadRefusedRequests: Counter
    let overloadShed: Counter
    private let proxyProtocolTimeout: Counter

    /// In seconds. The request path's histograms hold `Double` seconds rather than `Duration`:
    /// recording compares the value with every bucket, and `Duration`'s comparisons and sums are
    /// calls into the standard library where `Double`'s are single instructions (three histograms
    /// per request; the difference showed in profiles).
    static let latencyBuckets: [Double] = [
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ]

    /// `amount` in seconds, as the latency histograms record it.
    static func seconds(_ amount: TimeAmount) -> Double {
        Double(amount.nanoseconds) / 1_000_000_000
    }

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        addedLatency = registry.valueHistogram("portcullis_gateway_added_latency_seconds", labels: [], buckets: Self.latencyBuckets,
            help: "Time the gateway adds to a proxied request: total duration minus time waiting on the upstream.")
        openConnections = registry.gauge("portcullis_open_connections", labels: [], help: "Client connections currently open.")
        rejectedConnections = registry.counter("portcullis_rejected_connections_total", labels: [],
            help: "Client connections closed at once because limits.max_connections was reached.")
        underscoredFieldsDropped = registry.counter("portcullis_underscored_header_requests_total", labels: [],
            help: "Requests whose header fields with an underscore in the name were dropped (http.headers_with_underscores: drop).")
        slowRequestBodies = registry.counter("portcullis_slow_clients_total", labels: [("direction", "request_body")],
            help: "Client connections, or HTTP/2 streams, cut for being too slow: request_body (below limits.request_body_min_rate), response (its send buffer not drained below the low-water mark, or its HTTP/2 window kept shut, for limits.response_write_timeout).")
        stalledResponseWrites = registry.counter("portcullis_slow_clients_total", labels: [("direction", "response")],
            help: "Client connections, or HTTP/2 streams, cut for being too slow: request_body (below limits.request_body_min_rate), response (its send buffer not drained below the low-water mark, or its HTTP/2 window kept shut, for limits.response_write_timeout).")
        let protocolHelp = "Client connections by the protocol they speak: http/1.1, or h2 (ALPN on TLS, the connection preface on plaintext)."
        http1Connections = registry.counter("portcullis_client_connections_total", labels: [("protocol", "http/1.1")], help: protocolHelp)
        http2Connections = registry.counter("portcullis_client_connections_total", labels: [("protocol", "h2")], help: protocolHelp)
        malformedHTTP2Streams = registry.counter("portcullis_http2_malformed_streams_total", labels: [],
            help: "HTTP/2 streams from clients reset for a malformed message: a request whose header block or content-length breaks HTTP/2's rules, or whose :authority and Host disagree (or a response HTTP/2 does not allow). The client's other streams go on.")
        http2ConnectionErrors = registry.counter("portcullis_http2_connection_errors_total", labels: [],
            help: "HTTP/2 connections closed after a connection error (GOAWAY): floods, rapid reset, oversized header blocks, too many streams; and those closed for stream WINDOW_UPDATE frames beyond their budget.")
        let queueHelp = "HTTP/2 streams reset with ENHANCE_YOUR_CALM because their connection held more frames not yet read than its limit (16 384, or a quarter of the stream window if more) and they held the most: a peer sending many small frames on streams whose reads wait (the other side cannot take more). peer: client (the client's stream), upstream (a stream to an HTTP/2 upstream; its call fails)."
        http2QueueResets = registry.counter("portcullis_http2_queue_resets_total", labels: [("peer", "client")], help: queueHelp)
        upstreamHTTP2QueueResets = registry.counter("portcullis_http2_queue_resets_total", labels: [("peer", "upstream")], help: queueHelp)
        let joinedHelp = "HTTP/2 DATA frames of up to 1 024 bytes that arrived together in one read and were joined with others of their stream before swift-nio-http2 read them: how many frames fewer it read. A peer sending its bodies as many tiny frames shows here. peer: client, upstream."
        http2DataFramesJoined = registry.counter("portcullis_http2_data_frames_joined_total", labels: [("peer", "client")], help: joinedHelp)
        upstreamHTTP2DataFramesJoined = registry.counter("portcullis_http2_data_frames_joined_total", labels: [("peer", "upstream")], help: joinedHelp)
        upstreamHTTP2ConnectionErrors = registry.counter("portcullis_upstream_http2_connection_errors_total", labels: [],
            help: "HTTP/2 connections to upstreams closed after a connection error (the upstream broke the protocol, flooded PING/SETTINGS, RST_STREAM or WINDOW_UPDATE frames, or sent 200 malformed responses); their open streams fail.")
        upstreamHTTP2StreamErrors = registry.counter("portcullis_upstream_http2_stream_errors_total", labels: [],
            help: "Streams to HTTP/2 upstreams reset for a malformed message: a response whose header block, :status or content-length breaks HTTP/2's rules, or a request HTTP/2 does not allow. Each one's request fails; the connection stays.")
        upstreamHTTP2StreamsResent = registry.counter("portcullis_upstream_http2_streams_resent_total", labels: [],
            help: "Requests sent a second time, on a new stream, because an HTTP/2 upstream refused the first unprocessed (RST_STREAM REFUSED_STREAM, or past the last stream of its GOAWAY). A request is sent again once, and only while its body sent so far is at most 16 KiB; a refusal it cannot recover from counts as kind refused_stream in portcullis_upstream_failures_total.")
        upstreamHTTP2ConnectionsRetired = registry.counter("portcullis_upstream_http2_connections_retired_total", labels: [],
            help: "HTTP/2 connections to upstreams retired after 50 stream resets the gateway sent for its clients within 30 s (clients leaving, bodies over max_body_bytes, tokens ending), before the upstream's rapid-reset limit would close them; their open streams finish, new ones go on another connection.")
        memoryResident = registry.gauge("portcullis_memory_resident_bytes", labels: [],
            help: "The node's resident memory, read four times a second; what overload.memory_limit is compared with.")
        memoryLimit = registry.gauge("portcullis_memory_limit_bytes", labels: [],
            help: "overload.memory_limit in bytes: the resident memory at which the node is overloaded; 0 when off.")
        overloaded = registry.gauge("portcullis_overloaded", labels: [],
            help: "1 while the node is overloaded (resident memory reached overload.memory_limit and is not yet back under nine tenths of it), else 0.")
        let refusedHelp = "Work refused while overloaded: connection (closed at once), request (answered 503 overloaded; gRPC UNAVAILABLE)."
        overloadRefusedConnections = registry.counter("portcullis_overload_refused_total", labels: [("what", "connection")], help: refusedHelp)
        overloadRefusedRequests = registry.counter("portcullis_overload_refused_total", labels: [("what", "request")], help: refusedHelp)
        overloadShed = registry.counter("portcullis_overload_shed_total", labels: [],
            help: "Client connections and HTTP/2 streams cut while overloaded because their client left a response untaken for overload.response_write_timeout (also counted in portcullis_slow_clients_total{direction=\"response\"}).")
        let proxyProtocolHelp = "Connections closed on a proxy_protocol listener: invalid (not a valid PROXY protocol header), timeout (no complete header within limits.header_read_timeout)."
        proxyProtocolInvalid = registry.counter("portcullis_proxy_protocol_refused_total", labels: [("reason", "invalid")], help: proxyProtocolHelp)
        proxyProtocolTimeout = registry.counter("portcullis_proxy_protocol_refused_total", labels: [("reason", "timeout")], help: proxyProtocolHelp)
    }

    /// Counts a connection closed for want of a valid PROXY protocol header.
    func proxyProtocolRefused(_ reason: ProxyProtocolHandler.Refusal) {
        switch reason {
        case .invalid: proxyProtocolInvalid.increment()
        case .timeout: proxyProtocolTimeout.increment()
        }
    }

    /// A route's upstream ejections: `ejections` counts a target going from healthy to ejected (a
    /// failed connect); `ejected` holds how many are ejected now, set when `/metrics` is read (an
    /// ejection ends by time, not by an event). Only for routes with upstreams (not `_unmatched`).
    func upstreamEjections(route: String) -> (ejections: Counter, ejected: Gauge) {
        (registry.counter("portcullis_upstream_ejections_total", labels: [("route", route)],
                          help: "Upstream targets ejected (skipped for the route's eject_for) after a failed connect, by route."),
         registry.gauge("portcullis_upstream_ejected_targets", labels: [("route", route)],
                        help: "Upstream targets of the route ejected at the time of the scrape."))
    }

    func route(_ name: String) -> RouteMetrics {
        routes.withLock { cache in
            if let existing = cache[name] { return existing }
            let created = RouteMetrics(route: name, registry: registry)
            cache[name] = created
            return created
        }
    }

    func rateLimitDecision(policy: String, allowed: Bool, overflowed: Bool = false) {
        if overflowed {
            Self.counter(in: rateLimitDecisions, key: policy + "\u{0}overflow") {
                registry.counter("portcullis_ratelimit_key_overflow_total", labels: [("policy", policy)],
                                 help: "Requests counted under one of a policy's overflow keys (by client address) because the policy already held max_keys keys on this node.")
            }.increment()
        }
        let decision = allowed ? "allowed" : "rejected"
        Self.counter(in: rateLimitDecisions, key: policy + "\u{0}" + decision) {
            registry.counter("portcullis_ratelimit_decisions_total", labels: [("policy", policy), ("decision", decision)],
                                 help: "Rate-limit decisions by policy and outcome.")
        }.increment()
    }

    func upstreamFailure(route: String, kind: String) {
        Self.counter(in: upstreamFailures, key: route + "\u{0}" + kind) {
            registry.counter("portcullis_upstream_failures_total", labels: [("route", route), ("kind", kind)],
                                 help: "Failed upstream exchanges by route and kind (connect_failed, connect_timeout, response_header_timeout, ...).")
        }.increment()
    }

    /// The counter cached under `key`, made on first use.
    static func counter<Key: Hashable & Sendable>(in cache: borrowing Mutex<[Key: Counter]>, key: Key, make: () -> Counter) -> Counter {
        cache.withLock { entries in
            if let existing = entries[key] { return existing }
            let created = make()
            entries[key] = created
            return created
        }
    }
}
