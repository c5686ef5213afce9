import NIOCore
import NIOHTTP2

/// Rapid reset (CVE-2023-44487) on a client connection. A client's RST_STREAM is premature as
/// Envoy defines it: it ends a stream opened less than `minimumLifetime` before, to which the
/// gateway had not yet sent a response head — work begun and thrown away at once, which is what
/// the attack makes a server do by the thousand. A stream reset later has held one of the
/// connection's `max_concurrent_streams` for that long, or been answered, as a request is: a
/// client cancelling calls past their deadline, or leaving a long stream, is no attacker. More
/// than `limit` premature resets within `window` — swift-nio-http2's and nghttp2's count, where
/// Envoy closes at half of 500 streams — close the connection with GOAWAY (ENHANCE_YOUR_CALM).
///
/// swift-nio-http2's own limit counts every RST_STREAM frame, also those for streams whose
/// response was complete, which cost the gateway nothing. gRPC clients send those in the
/// ordinary course: grpc core resets a call whose status has arrived while its request side is
/// still open — a server that answers before the client's end — unless the gateway's RST_STREAM
/// NO_ERROR (`HTTP2EarlyResponseReset`) reached it first. After about 600 such calls in 30 s the
/// connection was closed, with every call open on it. That limit is raised on client
/// connections to what no client reaches (`HTTP2Pipeline`); this one takes its place.
///
/// Kept by `HTTP2FrameGuard`, which sees each stream's frames both ways and knows whether the
/// gateway had answered a stream when the client's reset came (`HTTP2WindowUpdateBudget`).
/// Event-loop confined, inside the guard.
struct HTTP2PrematureResets {
    static let limit = 200
    static let window = TimeAmount.seconds(30)
    static let minimumLifetime = TimeAmount.seconds(1)

    /// The connection error it raises; `HTTP2ConnectionErrorHandler` answers it with GOAWAY.
    struct Flood: HTTP2GuardConnectionError, CustomStringConvertible {
        var goAwayCode: HTTP2ErrorCode { .enhanceYourCalm }
        var description: String {
            "rapid reset: more than \(HTTP2PrematureResets.limit) streams reset by the client within a second of opening, before their response head, within \(HTTP2PrematureResets.window.nanoseconds / 1_000_000_000) s"
        }
    }

    private var resets = HTTP2ResetWindow(window: window, keep: limit + 1)

    /// A client's reset, at `now`, of a stream it opened at `openedAt` and had no response head
    /// on; true when that is more premature resets than the connection may have.
    mutating func noteReset(openedAt: NIODeadline, now: NIODeadline) -> Bool {
        guard now - openedAt < Self.minimumLifetime else { return false }
        return resets.note(at: now) > Self.limit
    }
}
