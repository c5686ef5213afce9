import Foundation

/// Monotonic nanoseconds (CLOCK_MONOTONIC), for ages and intervals.
public func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Nanoseconds from `earlier` to `now`, and 0 when `earlier` is the later of the two.
///
/// Why not `now - earlier`: the two readings are usually taken on different threads — a request
/// on an event loop stamps an entry while a sync task read its own `now` a moment before — so
/// "earlier" can be later by a few microseconds. Plain subtraction traps on that; wrapping
/// subtraction turns it into an age of 584 years, which once refused a client's requests for a
/// whole sync interval (an active rate-limit key looked idle) and would fail a node closed as
/// stale. A wall clock stepped back by NTP gives the same shape.
@inline(__always)
public func elapsedNanos(since earlier: UInt64, now: UInt64) -> UInt64 {
    now > earlier ? now - earlier : 0
}
