/// When an HTTP/2 stream's response-write deadline (`limits.response_write_timeout`) runs: while
/// the response waits on the client once its head is out (the stream not writable, too much held,
/// or a watched write the client's window has not let go), and from the response's end until the
/// client has taken it, since the stream stays open until then. A client that never opens its
/// window would otherwise keep the stream, and what waits on it, for good. Once the deadline has
/// passed (the stream is being reset) it is not armed again.
///
/// A state machine without I/O: each event says whether the stream's deadline is to be armed or
/// cancelled (`HTTP2StreamDeadlines` holds the timer).
struct HTTP2ResponseWriteDeadline {
    enum Action: Equatable {
        case none
        case arm
        case cancel
    }

    private var armed = false
    /// The deadline passed: the stream is being reset.
    private var cut = false
    /// The response's end is written: the deadline stays armed until the stream closes.
    private var ended = false

    /// The response's writability changed, or a write was taken: `waits` is whether the response
    /// now waits on the client, `headSent` whether its head is out (before it, waiting is the
    /// upstream's, which `response_header_timeout` bounds).
    mutating func observed(waits: Bool, headSent: Bool) -> Action {
        if !waits {
            guard armed, !ended else { return .none }
            armed = false
            return .cancel
        }
        guard headSent, !armed, !cut else { return .none }
        armed = true
        return .arm
    }

    /// The response's end is written.
    mutating func responseEnded() -> Action {
        ended = true
        guard !armed, !cut else { return .none }
        armed = true
        return .arm
    }

    /// The deadline passed.
    mutating func passed() {
        armed = false
        cut = true
    }
}
