import NIOHTTP1
import Tracing

/// One request's spans: the server span (`portcullis.request`) and, when it is recorded, its
/// children — authentication, the rate-limit decision and the upstream exchange. Carried in the
/// request's `RequestLog` from admission to `GatewayContext.record`, which ends it. Confined to
/// the event loop of the request's connection.
///
/// What is recorded is listed in docs/operations.md; tokens and claims never are (only the
/// rejection reason code), which `TracingTests` checks.
final class RequestTrace {
    private let tracing: RequestTracing
    let span: any Span
    private var exchange: (any Span)?
    /// The upstream's status, once its response head arrived.
    var upstreamStatus: Int?

    init(tracing: RequestTracing, span: any Span) {
        self.tracing = tracing
        self.span = span
    }

    /// The trace id for the access log (hex), the client's when it sent one.
    var traceID: String? { span.context.otelTraceID }

    /// A child of the request span, started now; nil when the request is not recorded (its
    /// client's `traceparent` said not to sample): children would be dropped anyway.
    func startChild(_ name: String, kind: SpanKind = .internal) -> (any Span)? {
        guard span.isRecording else { return nil }
        return tracing.tracer.startSpan(name, context: span.context, ofKind: kind)
    }

    /// Starts the upstream exchange's client span and names it as the parent in the trace
    /// context fields of `fields`, the head going upstream. The client's fields stay as they
    /// were when the request is not recorded.
    func startExchange(route: String, fields: inout [(name: String, value: String)]) {
        guard let exchange = startChild(RequestTracing.SpanName.upstream, kind: .client) else { return }
        exchange.attributes["portcullis.route"] = route
        self.exchange = exchange
        fields.removeAll { HeaderNameSet.matches($0.name, "traceparent") || HeaderNameSet.matches($0.name, "tracestate") }
        tracing.tracer.inject(exchange.context, into: &fields, using: UpstreamFieldsInjector())
    }

    /// The same for an HTTP/2 upstream's head.
    func startExchange(route: String, headers: inout HTTPHeaders) {
        guard let exchange = startChild(RequestTracing.SpanName.upstream, kind: .client) else { return }
        exchange.attributes["portcullis.route"] = route
        self.exchange = exchange
        headers.remove(name: "traceparent")
        headers.remove(name: "tracestate")
        tracing.tracer.inject(exchange.context, into: &headers, using: UpstreamHeadersInjector())
    }

    /// Ends the spans still open — the exchange's, then the request's — with what `log` says of
    /// the request's outcome.
    func finish(_ log: RequestLog) {
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
            exchange.end()
            self.exchange = nil
        }
        guard span.isRecording else { return }
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
        span.end()
    }
}

extension Span {
    /// Ends an authentication span: `portcullis.auth.result` accepted or rejected, and the
    /// rejection's reason code. Never the token or a claim.
    func endAuthentication(rejection reason: String?) {
        if let reason {
            attributes["portcullis.auth.result"] = "rejected"
            attributes["portcullis.auth.reason"] = reason
        } else {
            attributes["portcullis.auth.result"] = "accepted"
        }
        end()
    }

    /// Ends a rate-limit span with the policy and its decision.
    func endRateLimit(policy: String, allowed: Bool, remaining: Int) {
        updateAttributes { attributes in
            attributes["portcullis.rate_limit.policy"] = policy
            attributes["portcullis.rate_limit.allowed"] = allowed
            attributes["portcullis.rate_limit.remaining"] = remaining
        }
        end()
    }
}
