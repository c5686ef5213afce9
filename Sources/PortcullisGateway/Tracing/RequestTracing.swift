import NIOHTTP1
import Tracing

/// The node's tracer as the request path uses it: starts a request's server span from the
/// client's trace context (`startRequest`); everything after goes through the `RequestTrace` that
/// returns. Present only when `tracing.enabled`: the request path asks `GatewayContext.tracing`
/// once per request and, without it, does nothing else for tracing.
///
/// Spans are started and ended explicitly with the context they carry, never through task
/// locals: the request path runs in NIO handlers, not in tasks.
final class RequestTracing: Sendable {
    let tracer: any Tracer
    /// `portcullis.node` on every request span.
    let node: String

    init(tracer: any Tracer, node: String) {
        self.tracer = tracer
        self.node = node
    }

    /// The request's trace: a server span whose parent is the client's `traceparent` (when it
    /// sent a well-formed one). Nil when the sampler drops the request and it came without a
    /// trace context: nothing is recorded, propagated or logged for it then.
    func startRequest(_ head: HTTPRequestHead) -> RequestTrace? {
        var parent = InstrumentationContext.topLevel
        let incoming = TraceHeaders(head.headers)
        if let incoming {
            tracer.extract(incoming, into: &parent, using: TraceHeaders.Extractor())
        }
        let span = tracer.startSpan(SpanName.request, context: parent, ofKind: .server)
        guard span.isRecording || incoming != nil else { return nil }
        return RequestTrace(tracing: self, span: span)
    }

    /// Span names, stable for dashboards and tests.
    enum SpanName {
        static let request = "portcullis.request"
        static let authentication = "portcullis.authentication"
        static let rateLimit = "portcullis.rate_limit"
        static let upstream = "portcullis.upstream"
    }
}
