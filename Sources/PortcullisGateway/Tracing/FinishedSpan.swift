import Tracing
import W3CTraceContext

/// A span the gateway recorded, once it ended: what the OTLP export carries of it
/// (`OTLPTraceRequest`). Built on the request's event loop, encoded later by the export task.
struct FinishedSpan: Sendable {
    let name: String
    let kind: SpanKind
    let traceID: TraceID
    let spanID: SpanID
    /// The parent span's id: the client's span for a request span that continues its trace, the
    /// request span for the others; nil for a request span that starts a trace.
    let parentSpanID: SpanID?
    /// The trace's `tracestate`, as the client sent it.
    let traceState: String?
    /// Nanoseconds since the Unix epoch.
    let start: UInt64
    let end: UInt64
    let attributes: SpanAttributes
    /// OTLP status ERROR (the request failed with a 5xx, or the upstream gave no response); unset otherwise.
    let isError: Bool
}
