import PortcullisCluster

/// One token bucket of audit entries (`AuditFailureLimiter`, `AuditActorLimiter`): `burst`
/// entries, refilled at `perSecond`, and how many were left out since the last one written.
struct AuditBucket {
    enum Decision: Equatable {
        /// Write the entry; `suppressedBefore` entries were left out since the last one written.
        case record(suppressedBefore: Int)
        /// Leave it out (it is counted).
        case suppress
    }

    private(set) var tokens: Double
    private var refilledAt: UInt64
    private var suppressed = 0

    /// A full bucket at `time` (monotonic nanoseconds).
    init(burst: Int, at time: UInt64) {
        tokens = Double(burst)
        refilledAt = time
    }

    /// Refills for the time since the last refill, up to `burst`.
    mutating func refill(at time: UInt64, burst: Int, perSecond: Double) {
        let elapsed = Double(elapsedNanos(since: refilledAt, now: time)) / 1e9
        tokens = min(Double(burst), tokens + elapsed * perSecond)
        refilledAt = time
    }

    /// Takes one entry if there is one (after refilling).
    mutating func admit(at time: UInt64, burst: Int, perSecond: Double) -> Decision {
        refill(at: time, burst: burst, perSecond: perSecond)
        guard tokens >= 1 else {
            suppressed += 1
            return .suppress
        }
        tokens -= 1
        defer { suppressed = 0 }
        return .record(suppressedBefore: suppressed)
    }
}
