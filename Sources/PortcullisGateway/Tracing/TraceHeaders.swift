import NIOHTTP1
import W3CTraceContext

/// A request's W3C Trace Context (`traceparent`, `tracestate`), parsed by swift-w3c-trace-context:
/// the client's trace and span ids, its sampled flag, and its validated `tracestate`.
struct TraceHeaders: Sendable {
    let traceID: TraceID
    /// The client's span: the parent of the request span.
    let spanID: SpanID
    let sampled: Bool
    /// The client's `tracestate` as validated and written back by swift-w3c-trace-context; nil when
    /// absent, empty or malformed (a malformed `tracestate` is dropped and the `traceparent` kept,
    /// as W3C Trace Context says).
    let traceState: String?

    /// The request's trace context, given its first `traceparent` (found in the pass over its
    /// fields the request path makes anyway); nil without a version-00 `traceparent` in lower-case
    /// hex with non-zero ids, which then starts a new trace as if absent.
    init?(traceparent: String?, headers: HTTPHeaders) {
        guard let traceparent, let context = try? TraceContext(traceParentHeaderValue: traceparent) else { return nil }
        traceID = context.traceID
        spanID = context.spanID
        sampled = context.flags.contains(.sampled)
        // Several `tracestate` fields are one list (W3C Trace Context §3.3.1.1).
        let field = headers["tracestate"].joined(separator: ",")
        // Written back, it must still be within W3C's bounds (32 members, 512 bytes): the library
        // takes more members, and joins them with ", " (a hundred empty ones grew 489 bytes to 588).
        if !field.isEmpty, Self.mayParse(tracestate: field),
           let withState = try? TraceContext(traceParentHeaderValue: traceparent, traceStateHeaderValue: field),
           let written = withState.traceStateHeaderValue, written.utf8.count <= 512,
           written.utf8.count(where: { $0 == UInt8(ascii: ",") }) < 32 {
            traceState = written
        } else {
            traceState = nil
        }
    }

    /// W3C Trace Context allows at most 32 members of at most 256 characters each in printable
    /// ASCII; a `tracestate` longer than 512 bytes may be dropped, and this one is, before
    /// swift-w3c-trace-context sees it: its parser walks a value character by character (a
    /// long value costs an allocation per character on the event loop) and measures its error
    /// ranges in UTF-8 bytes against character offsets, which a non-ASCII value (a letter and a
    /// combining mark) drives past the string's start, a trap (`TracingUnitTests`).
    static func mayParse(tracestate: String) -> Bool {
        tracestate.utf8.count <= 512 && tracestate.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
    }

    /// The `traceparent` a recorded request sends upstream: its trace, the exchange span as the
    /// parent, sampled.
    static func traceparent(traceID: TraceID, parent: SpanID) -> String {
        TraceContext(traceID: traceID, spanID: parent, flags: .sampled, state: TraceState()).traceParentHeaderValue
    }
}
