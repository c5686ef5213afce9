import NIOHTTP1
import Synchronization
import W3CTraceContext

/// The node's tracing as the request path uses it: starts a request's trace from the client's
/// trace context (`startRequest`); everything after goes through the `RequestTrace` that returns.
/// Present only when `tracing.enabled`: the request path asks `GatewayContext.tracing` once per
/// request and, without it, does nothing else for tracing.
///
/// A recorded request's spans are plain values built on its event loop: the request hands them
/// over when it ends (`enqueue`: one lock, uncontended but for the export task's swap), and
/// `TracingExporter` takes them from `pending` in batches, encodes and posts them from a task of
/// its own. Nothing on the request path wakes another thread (docs/benchmarks.md "Tracing").
final class RequestTracing: Sendable {
    /// `portcullis.node` on every request span.
    let node: String
    /// A trace started here is recorded when a draw falls below this (`sampling_ratio` of the
    /// range); `Self.always` records every one.
    private let rootThreshold: UInt64
    private static let always = UInt64.max
    private let draws: Atomic<UInt64>
    private let pending = Mutex(Pending())
    /// Spans waiting for the export beyond this are dropped (and counted in the exporter's log):
    /// a slow or unreachable collector costs spans, never memory or requests.
    static let maxPendingSpans = 4096

    struct Pending {
        var spans: [FinishedSpan] = []
        var dropped = 0
    }

    init(node: String, samplingRatio: Double) {
        self.node = node
        rootThreshold = samplingRatio >= 1 ? Self.always : UInt64(Double(UInt64.max) * max(0, samplingRatio))
        draws = Atomic(UInt64.random(in: .min ... .max))
    }

    /// The request's trace, continuing the client's (its `traceparent`, when well formed) or
    /// starting one; recorded when the client's sampled flag says so, or, for a trace started
    /// here, when the draw does. Nil for a trace started here that is not recorded: nothing is
    /// recorded, propagated or logged for it then.
    /// `traceparent` is the request's first such field (`RequestHeadFacts`): without one, a
    /// request costs a draw and nothing else.
    func startRequest(traceparent: String?, headers: HTTPHeaders) -> RequestTrace? {
        if let incoming = TraceHeaders(traceparent: traceparent, headers: headers) {
            return RequestTrace(tracing: self, traceID: incoming.traceID, clientSpanID: incoming.spanID,
                                traceState: incoming.traceState, isRecording: incoming.sampled)
        }
        guard drawRecords() else { return nil }
        return RequestTrace(tracing: self, traceID: .random(), clientSpanID: nil, traceState: nil, isRecording: true)
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

    /// Queues a finished request's spans for the export.
    func enqueue(_ spans: [FinishedSpan]) {
        pending.withLock { pending in
            if pending.spans.count + spans.count <= Self.maxPendingSpans {
                pending.spans.append(contentsOf: spans)
            } else {
                pending.dropped += spans.count
            }
        }
    }

    /// Everything queued, and how many spans were dropped since the last take.
    func take() -> Pending {
        var taken = Pending()
        taken.spans.reserveCapacity(256)
        pending.withLock { swap(&taken, &$0) }
        return taken
    }

    /// How many spans are queued.
    var pendingCount: Int { pending.withLock { $0.spans.count } }

    /// Span names, stable for dashboards and tests.
    enum SpanName {
        static let request = "portcullis.request"
        static let authentication = "portcullis.authentication"
        static let rateLimit = "portcullis.rate_limit"
        static let upstream = "portcullis.upstream"
    }
}
