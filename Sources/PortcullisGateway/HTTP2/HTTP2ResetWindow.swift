import NIOCore

/// The stream resets that fell within the last `window`, for the budgets that bound them:
/// `HTTP2PrematureResets` (a client's, on its connection) and `HTTP2UpstreamResetBudget` (the
/// gateway's own, on a connection to an upstream). Keeps at most `keep` times, so what it holds
/// is bounded whatever the rate. Event-loop confined, inside its owner.
struct HTTP2ResetWindow {
    let window: TimeAmount
    private let keep: Int
    private var times: CircularBuffer<NIODeadline>

    init(window: TimeAmount, keep: Int) {
        self.window = window
        self.keep = keep
        self.times = CircularBuffer(initialCapacity: min(keep, 8))
    }

    /// Counts a reset at `now`; returns how many fell within the window, this one included (at
    /// most `keep`).
    mutating func note(at now: NIODeadline) -> Int {
        while let first = times.first, now - first > window { times.removeFirst() }
        if times.count == keep { times.removeFirst() }
        times.append(now)
        return times.count
    }
}
