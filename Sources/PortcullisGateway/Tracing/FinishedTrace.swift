import Tracing

/// What remains to be told to the tracer about a request after its response: the spans it
/// recorded but did not start with the tracer (authentication, rate limit: never propagated, so
/// their ids need not exist during the request), and the ends of all of them, each with the
/// instant it happened. `RequestTracing` hands these to the tracer in batches, off the event loop.
struct FinishedTrace: Sendable {
    /// A span the request recorded as data: started with the tracer only when its batch is flushed.
    struct Child: Sendable {
        let name: String
        let start: DefaultTracerClock.Timestamp
        let end: DefaultTracerClock.Timestamp
        let attributes: SpanAttributes
    }

    let request: any Span
    let requestEnd: DefaultTracerClock.Timestamp
    let children: [Child]
    let exchange: (span: any Span, end: DefaultTracerClock.Timestamp)?

    /// Starts the children under the request span and ends every span at its recorded instant.
    func emit(with tracer: any Tracer) {
        for child in children {
            let span = tracer.startSpan(child.name, context: request.context, ofKind: .internal, at: child.start)
            span.attributes = child.attributes
            span.end(at: child.end)
        }
        if let exchange { exchange.span.end(at: exchange.end) }
        request.end(at: requestEnd)
    }
}
