import NIOHTTP1
import Tracing

/// One request's trace: its server span (`portcullis.request`) and, when it is recorded, its
/// children — authentication, the rate-limit decision and the upstream exchange. Carried in the
/// request's `RequestLog` from admission to `GatewayContext.record`, which finishes it. Confined
/// to the event loop of the request's connection.
///
/// The tracer (swift-otel) wakes a task of its own for every span started or ended, which on a
/// busy event loop preempts it; so the request asks the tracer for as little as it can while it
/// runs: the request span is started (with the instant the request arrived) only when its id is
/// needed — for the exchange's `traceparent` going upstream, or for the access log's trace id at
/// the end — the exchange span when it starts, and everything else (the authentication and
/// rate-limit spans, every end) is recorded here and handed over in batches by
/// `RequestTracing.flush()` (docs/benchmarks.md "Tracing").
///
/// What is recorded is listed in docs/operations.md; tokens and claims never are (only the
/// rejection reason code), which `TracingTests` checks.
final class RequestTrace {
    private let tracing: RequestTracing
    /// The client's trace context (or none); the request span's parent.
    private let parent: InstrumentationContext
    /// False when the client's `traceparent` said not to sample: nothing is recorded then, and
    /// the trace id is the client's.
    let isRecording: Bool
    private let start: DefaultTracerClock.Timestamp
    private var span: (any Span)?
    private var children: [FinishedTrace.Child] = []
    private var exchange: (any Span)?
    private var finished = false
    /// The upstream's status, once its response head arrived.
    var upstreamStatus: Int?

    init(tracing: RequestTracing, parent: InstrumentationContext, isRecording: Bool) {
        self.tracing = tracing
        self.parent = parent
        self.isRecording = isRecording
        start = DefaultTracerClock.now
    }

    /// The trace id for the access log (hex), the client's when it sent one.
    var traceID: String? { span?.context.otelTraceID ?? parent.otelTraceID }

    /// The request span, started with the tracer now if it was not yet.
    private func requestSpan() -> any Span {
        if let span { return span }
        let started = tracing.tracer.startSpan(RequestTracing.SpanName.request, context: parent, ofKind: .server, at: start)
        span = started
        return started
    }

    /// Now, to pass to `recordAuthentication` or `recordRateLimit` as the span's start; nil when
    /// the request is not recorded.
    var childStart: DefaultTracerClock.Timestamp? { isRecording ? DefaultTracerClock.now : nil }

    /// Records the authentication span, started at `start` and ending now: `portcullis.auth.result`
    /// accepted or rejected, and the rejection's reason code. Never the token or a claim.
    func recordAuthentication(startedAt start: DefaultTracerClock.Timestamp, rejection reason: String?) {
        var attributes = SpanAttributes()
        if let reason {
            attributes["portcullis.auth.result"] = "rejected"
            attributes["portcullis.auth.reason"] = reason
        } else {
            attributes["portcullis.auth.result"] = "accepted"
        }
        children.append(.init(name: RequestTracing.SpanName.authentication, start: start, end: DefaultTracerClock.now, attributes: attributes))
    }

    /// Records the rate-limit span, started at `start` and ending now, with the policy and its decision.
    func recordRateLimit(startedAt start: DefaultTracerClock.Timestamp, policy: String, allowed: Bool, remaining: Int) {
        var attributes = SpanAttributes()
        attributes["portcullis.rate_limit.policy"] = policy
        attributes["portcullis.rate_limit.allowed"] = allowed
        attributes["portcullis.rate_limit.remaining"] = remaining
        children.append(.init(name: RequestTracing.SpanName.rateLimit, start: start, end: DefaultTracerClock.now, attributes: attributes))
    }

    /// Starts the upstream exchange's client span (its context goes upstream, so it must exist
    /// now); nil when the request is not recorded.
    private func startExchange(route: String) -> (any Span)? {
        guard isRecording else { return nil }
        let exchange = tracing.tracer.startSpan(RequestTracing.SpanName.upstream, context: requestSpan().context, ofKind: .client)
        exchange.attributes["portcullis.route"] = route
        self.exchange = exchange
        return exchange
    }

    /// Starts the upstream exchange's span and names it as the parent in the trace context
    /// fields of `fields`, the head going upstream. The client's fields stay as they were when
    /// the request is not recorded.
    func startExchange(route: String, fields: inout [(name: String, value: String)]) {
        guard let exchange = startExchange(route: route) else { return }
        fields.removeAll { HeaderNameSet.matches($0.name, "traceparent") || HeaderNameSet.matches($0.name, "tracestate") }
        tracing.tracer.inject(exchange.context, into: &fields, using: UpstreamFieldsInjector())
    }

    /// The same for an HTTP/2 upstream's head.
    func startExchange(route: String, headers: inout HTTPHeaders) {
        guard let exchange = startExchange(route: route) else { return }
        headers.remove(name: "traceparent")
        headers.remove(name: "tracestate")
        tracing.tracer.inject(exchange.context, into: &headers, using: UpstreamHeadersInjector())
    }

    /// Sets what `log` says of the request's outcome on its spans and hands them to
    /// `RequestTracing` to be ended in its next batch, each at the instant recorded here.
    func finish(_ log: RequestLog) {
        guard isRecording, !finished else { return }
        finished = true
        let end = DefaultTracerClock.now
        var finishedExchange: (span: any Span, end: DefaultTracerClock.Timestamp)?
        if let exchange {
            if let upstream = log.upstream { exchange.attributes["server.address"] = upstream }
            if let upstreamStatus {
                exchange.attributes["http.response.status_code"] = upstreamStatus
                if upstreamStatus >= 500 { exchange.setStatus(.init(code: .error)) }
            } else {
                // No response from the upstream: the gateway's reason (connect_failed, timeout, …).
                exchange.attributes["error.type"] = log.reason ?? "no_response"
                exchange.setStatus(.init(code: .error))
            }
            finishedExchange = (exchange, end)
            self.exchange = nil
        }
        let span = requestSpan()
        span.updateAttributes { attributes in
            attributes["http.request.method"] = log.method
            attributes["url.path"] = log.path
            attributes["http.response.status_code"] = log.status
            attributes["portcullis.node"] = tracing.node
            attributes["portcullis.request_id"] = log.requestID
            if let route = log.route { attributes["portcullis.route"] = route }
            if let reason = log.reason { attributes["portcullis.reason"] = reason }
        }
        if log.status >= 500 { span.setStatus(.init(code: .error)) }
        tracing.enqueue(FinishedTrace(request: span, requestEnd: end, children: children, exchange: finishedExchange))
        children = []
    }
}
