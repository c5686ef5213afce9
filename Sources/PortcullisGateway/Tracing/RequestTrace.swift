import NIOHTTP1
import Tracing
import W3CTraceContext

/// One request's trace: its server span (`portcullis.request`) and, when it is recorded, its
/// children — authentication, the rate-limit decision and the upstream exchange. Carried in the
/// request's `RequestLog` from admission to `GatewayContext.record`, which finishes it. Confined
/// to the event loop of the request's connection.
///
/// Spans are values recorded here (ids drawn when the span starts, so the exchange's
/// `traceparent` can name its span at once) and handed to `RequestTracing` in one piece when the
/// request ends; no tracer is called and no other thread is woken while the request runs.
///
/// What is recorded is listed in docs/operations.md; tokens and claims never are (only the
/// rejection reason code), which `TracingTests` checks.
final class RequestTrace {
    private let tracing: RequestTracing
    /// The trace: the client's when it sent a `traceparent`, otherwise drawn here.
    let traceID: TraceID
    /// The client's span, the request span's parent; nil for a trace started here.
    private let clientSpanID: SpanID?
    /// The client's `tracestate` (validated), carried on every span and upstream.
    private let traceState: String?
    /// False when the client's `traceparent` said not to sample: nothing is recorded then, and
    /// the trace id is the client's (for the access log).
    let isRecording: Bool
    private let requestSpanID: SpanID
    private let start: UInt64
    private var children: [FinishedSpan] = []
    private var exchange: (id: SpanID, start: UInt64, route: String)?
    private var finished = false
    /// The upstream's status, once its response head arrived.
    var upstreamStatus: Int?
    /// The longest `url.path` recorded; a longer one is cut (the access log has it whole).
    static let maxPathBytes = 1024

    init(tracing: RequestTracing, traceID: TraceID, clientSpanID: SpanID?, traceState: String?, isRecording: Bool) {
        self.tracing = tracing
        self.traceID = traceID
        self.clientSpanID = clientSpanID
        self.traceState = traceState
        self.isRecording = isRecording
        requestSpanID = isRecording ? .random() : .null
        start = Self.now()
    }

    /// Nanoseconds since the Unix epoch (swift-distributed-tracing's wall clock).
    static func now() -> UInt64 { DefaultTracerClock.now.nanosecondsSinceEpoch }

    /// Now, to pass to `recordAuthentication` or `recordRateLimit` as the span's start; nil when
    /// the request is not recorded.
    var childStart: UInt64? { isRecording ? Self.now() : nil }

    private func child(_ name: String, kind: SpanKind = .internal, id: SpanID = .random(), start: UInt64, attributes: SpanAttributes,
                       isError: Bool = false) -> FinishedSpan {
        FinishedSpan(name: name, kind: kind, traceID: traceID, spanID: id, parentSpanID: requestSpanID, traceState: traceState,
                     start: start, end: Self.now(), attributes: attributes, isError: isError)
    }

    /// Records the authentication span, started at `start` and ending now: `portcullis.auth.result`
    /// accepted or rejected, and the rejection's reason code. Never the token or a claim.
    func recordAuthentication(startedAt start: UInt64, rejection reason: String?) {
        var attributes = SpanAttributes()
        if let reason {
            attributes["portcullis.auth.result"] = "rejected"
            attributes["portcullis.auth.reason"] = reason
        } else {
            attributes["portcullis.auth.result"] = "accepted"
        }
        children.append(child(RequestTracing.SpanName.authentication, start: start, attributes: attributes))
    }

    /// Records the rate-limit span, started at `start` and ending now, with the policy and its decision.
    func recordRateLimit(startedAt start: UInt64, policy: String, allowed: Bool, remaining: Int) {
        var attributes = SpanAttributes()
        attributes["portcullis.rate_limit.policy"] = policy
        attributes["portcullis.rate_limit.allowed"] = allowed
        attributes["portcullis.rate_limit.remaining"] = remaining
        children.append(child(RequestTracing.SpanName.rateLimit, start: start, attributes: attributes))
    }

    /// Starts the upstream exchange's client span and returns the `traceparent` naming it, for
    /// the head going upstream; nil when the request is not recorded.
    private func startExchange(route: String) -> String? {
        guard isRecording else { return nil }
        let id = SpanID.random()
        exchange = (id, Self.now(), route)
        return TraceHeaders.traceparent(traceID: traceID, parent: id)
    }

    /// Starts the upstream exchange's span and names it as the parent in the trace context
    /// fields of `fields`, the head going upstream. The client's fields stay as they were when
    /// the request is not recorded.
    func startExchange(route: String, fields: inout [(name: String, value: String)]) {
        guard let traceparent = startExchange(route: route) else { return }
        fields.removeAll { HeaderNameSet.matches($0.name, "traceparent") || HeaderNameSet.matches($0.name, "tracestate") }
        fields.append(("traceparent", traceparent))
        if let traceState { fields.append(("tracestate", traceState)) }
    }

    /// Ends the request's spans with what `log` says of its outcome and hands them to
    /// `RequestTracing` for the export.
    func finish(_ log: RequestLog) {
        guard isRecording, !finished else { return }
        finished = true
        if let exchange {
            var attributes = SpanAttributes()
            attributes["portcullis.route"] = exchange.route
            if let upstream = log.lastUpstream { attributes["server.address"] = String(upstream) }
            let isError: Bool
            if let upstreamStatus {
                attributes["http.response.status_code"] = upstreamStatus
                // A reason after the upstream's head: the exchange failed on the way (a malformed
                // or cut body, the client gone, the token ended), whatever the status said.
                if let reason = log.reason { attributes["error.type"] = reason }
                isError = upstreamStatus >= 500 || log.reason != nil
            } else {
                // No response from the upstream: the gateway's reason (connect_failed, timeout, …).
                attributes["error.type"] = log.reason ?? "no_response"
                isError = true
            }
            children.append(child(RequestTracing.SpanName.upstream, kind: .client, id: exchange.id, start: exchange.start,
                                  attributes: attributes, isError: isError))
            self.exchange = nil
        }
        var attributes = SpanAttributes()
        attributes["http.request.method"] = log.method
        // Bounded: a client chooses the path, and every recorded span is exported (a long one would
        // make a batch the collector refuses).
        attributes["url.path"] = log.path.utf8.count <= Self.maxPathBytes ? log.path : String(decoding: log.path.utf8.prefix(Self.maxPathBytes), as: UTF8.self)
        attributes["http.response.status_code"] = log.status
        attributes["portcullis.node"] = tracing.node
        attributes["portcullis.request_id"] = log.requestID
        if let route = log.route { attributes["portcullis.route"] = route }
        if let reason = log.reason { attributes["portcullis.reason"] = reason }
        children.append(FinishedSpan(name: RequestTracing.SpanName.request, kind: .server, traceID: traceID, spanID: requestSpanID,
                                     parentSpanID: clientSpanID, traceState: traceState, start: start, end: Self.now(),
                                     attributes: attributes, isError: log.status >= 500))
        tracing.enqueue(children)
        children = []
    }
}
