import NIOHTTP1
import Synchronization
import Tracing

/// The node's tracer as the request path uses it: starts a request's trace from the client's
/// trace context (`startRequest`); everything after goes through the `RequestTrace` that
/// returns. Present only when `tracing.enabled`: the request path asks `GatewayContext.tracing`
/// once per request and, without it, does nothing else for tracing.
///
/// Spans are started and ended explicitly with the context they carry, never through task
/// locals: the request path runs in NIO handlers, not in tasks. Finished requests' spans wait in
/// `pending` (a lock taken once per recorded request, uncontended but for the flush) until
/// `flush()`, which `TracingExporter` calls every `flushInterval` from a task of its own, ends them
/// with the tracer.
final class RequestTracing: Sendable {
    let tracer: any Tracer
    /// `portcullis.node` on every request span.
    let node: String
    /// A trace started here is recorded when a draw falls below this (`sampling_ratio` of the
    /// range); `Self.always` records every one.
    private let rootThreshold: UInt64
    private static let always = UInt64.max
    private let draws: Atomic<UInt64>
    private let pending = Mutex<[FinishedTrace]>([])
    /// Finished requests waiting for a flush beyond this are dropped, as the exporter's own
    /// queue drops spans beyond its bound.
    static let maxPending = 2048
    /// How often `TracingExporter` flushes: spans reach the exporter's batch this much later.
    static let flushInterval: Duration = .milliseconds(50)

    /// `tracer` must sample parent-based with its roots always on: the ratio for traces started
    /// here is drawn by `startRequest`, before the tracer is asked.
    init(tracer: any Tracer, node: String, samplingRatio: Double) {
        self.tracer = tracer
        self.node = node
        rootThreshold = samplingRatio >= 1 ? Self.always : UInt64(Double(UInt64.max) * max(0, samplingRatio))
        draws = Atomic(UInt64.random(in: .min ... .max))
    }

    /// The request's trace, whose server span's parent is the client's `traceparent` (when it
    /// sent a well-formed one); recorded when that says sampled. Nil for a request that starts a
    /// trace the draw does not record: nothing is recorded, propagated or logged for it then, and
    /// the tracer is not asked.
    /// `traceparent` is the request's first such field (`RequestHeadFacts`): without one, a
    /// request costs a draw and nothing else.
    func startRequest(traceparent: String?, headers: HTTPHeaders) -> RequestTrace? {
        if let incoming = TraceHeaders(traceparent: traceparent, headers: headers) {
            var parent = InstrumentationContext.topLevel
            tracer.extract(incoming, into: &parent, using: TraceHeaders.Extractor())
            if parent.otelTraceID != nil {
                return RequestTrace(tracing: self, parent: parent, isRecording: parent.otelIsSampled)
            }
        }
        return drawRecords() ? RequestTrace(tracing: self, parent: .topLevel, isRecording: true) : nil
    }

    /// Whether a trace started here is recorded: splitmix64 over a shared counter, one relaxed
    /// atomic add per request and no system call.
    func drawRecords() -> Bool {
        if rootThreshold == Self.always { return true }
        var z = draws.wrappingAdd(0x9E37_79B9_7F4A_7C15, ordering: .relaxed).newValue
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return (z ^ (z >> 31)) < rootThreshold
    }

    /// Queues a finished request's spans for the next `flush()`.
    func enqueue(_ trace: FinishedTrace) {
        pending.withLock { pending in
            if pending.count < Self.maxPending { pending.append(trace) }
        }
    }

    /// Hands every queued request's spans to the tracer, ended at their recorded instants.
    func flush() {
        var batch: [FinishedTrace] = []
        pending.withLock { swap(&batch, &$0) }
        for trace in batch { trace.emit(with: tracer) }
    }

    /// Span names, stable for dashboards and tests.
    enum SpanName {
        static let request = "portcullis.request"
        static let authentication = "portcullis.authentication"
        static let rateLimit = "portcullis.rate_limit"
        static let upstream = "portcullis.upstream"
    }
}
