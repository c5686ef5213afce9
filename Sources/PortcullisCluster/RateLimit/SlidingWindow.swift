/// The sliding-window counter behind every rate limit (local and cluster-wide).
///
/// Why a sliding window and not GCRA: a window count is a plain sum, so counts from several
/// nodes add up exactly through Redis `INCRBY` on a per-window key; GCRA's state (a theoretical
/// arrival time) cannot be merged across nodes without a Redis round trip per request. The window
/// is approximated Cloudflare-style from two fixed windows: `previous × (1 − elapsed/window) + current`,
/// which never lets through the 2× burst a fixed window allows at its boundary.
public struct SlidingWindow: Sendable, Equatable {
    /// Window length in nanoseconds.
    public let windowNanos: UInt64
    /// Index of the current fixed window (`now / windowNanos`).
    public private(set) var index: UInt64 = 0
    /// Requests counted in the current fixed window.
    public private(set) var current: Double = 0
    /// Requests counted in the previous fixed window.
    public private(set) var previous: Double = 0

    public init(window: Duration) {
        windowNanos = max(1, window.wholeNanoseconds)
    }

    /// Rolls the fixed windows forward to `now` (monotonic nanoseconds). Never back: a caller
    /// that read the clock just before another thread advanced the window (or a wall clock
    /// stepped back) must not wipe the counts of the window it is late for.
    public mutating func advance(to now: UInt64) {
        let nowIndex = now / windowNanos
        guard nowIndex > index else { return }
        previous = nowIndex == index + 1 ? current : 0
        current = 0
        index = nowIndex
    }

    /// Requests counted over the sliding window ending at `time`, assuming none arrive after the
    /// current fixed window (so it also projects ahead: one window on, `current` becomes `previous`).
    public func estimate(at time: UInt64) -> Double {
        let timeIndex = time / windowNanos
        let elapsed = Double(time % windowNanos) / Double(windowNanos)
        if timeIndex <= index { return previous * (1 - elapsed) + current }
        if timeIndex == index + 1 { return current * (1 - elapsed) }
        return 0
    }

    /// Counts `n` requests in the current window.
    public mutating func add(_ n: Double) {
        current += n
    }

    /// Replaces the counts with cluster-wide totals (the cluster limiter does this on every sync).
    public mutating func set(index: UInt64, current: Double, previous: Double) {
        self.index = index
        self.current = current
        self.previous = previous
    }

    /// Nanoseconds until `estimate` drops below `limit`, assuming no new requests.
    public func nanosUntilBelow(_ limit: Double, at now: UInt64) -> UInt64 {
        let intoWindow = now % windowNanos
        let remainingInWindow = windowNanos - intoWindow
        if current >= limit {
            // Only the next window frees room: then `current` becomes `previous` and decays.
            let nextPrevious = current
            guard nextPrevious > 0 else { return remainingInWindow }
            let fraction = max(0, 1 - limit / nextPrevious)
            return remainingInWindow + UInt64(fraction * Double(windowNanos))
        }
        guard previous > 0 else { return 0 }
        // previous × (1 − t/window) + current < limit  ⇔  t > window × (1 − (limit − current)/previous)
        let needed = 1 - (limit - current) / previous
        let targetNanos = UInt64(max(0, needed) * Double(windowNanos))
        return targetNanos > intoWindow ? targetNanos - intoWindow : 0
    }
}
