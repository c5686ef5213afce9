import PortcullisCluster
import PortcullisJOSE
import Synchronization

/// Decides which of an end user's own actions at the authorization server (sign-in, consent,
/// sign-out) get an audit entry: a token bucket per actor of `burst` entries refilled at
/// `perSecond`. Those actions need no admin credential, and one signed-in user re-posting the
/// consent form as fast as the control plane answers would otherwise push operators' entries out
/// of the capped audit stream. Every entry left out is counted
/// (`portcullis_admin_audit_suppressed_total`), and the actor's next entry written says how many
/// it follows (`suppressed_before`).
///
/// Per control-plane process, at most `maxActors` buckets: past that, buckets that have refilled
/// (their actor idle) are dropped, and while none has, newcomers share one bucket.
final class AuditActorLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var refilledAt: UInt64
        var suppressed: Int
    }

    static let defaultBurst = 10
    /// One entry per 6 s: 10 a minute per user.
    static let defaultPerSecond = 1.0 / 6
    static let maxActors = 4096
    private static let overflow = ExactKey("\u{0}overflow")

    let burst: Int
    let perSecond: Double
    private let buckets = Mutex<[ExactKey: Bucket]>([:])
    private let now: @Sendable () -> UInt64

    /// - Parameter now: monotonic nanoseconds (tests move it by hand).
    init(burst: Int = defaultBurst, perSecond: Double = defaultPerSecond, now: @escaping @Sendable () -> UInt64 = { monotonicNanos() }) {
        self.burst = burst
        self.perSecond = perSecond
        self.now = now
    }

    /// Takes one entry from `actor`'s bucket if there is one.
    func admit(_ actor: String) -> AuditFailureLimiter.Decision {
        let time = now()
        return buckets.withLock { buckets in
            var key = ExactKey(actor)
            if buckets[key] == nil, buckets.count >= Self.maxActors {
                buckets = buckets.filter { refilled($0.value, at: time).tokens < Double(burst) }
                if buckets.count >= Self.maxActors { key = Self.overflow }
            }
            var bucket = refilled(buckets[key] ?? Bucket(tokens: Double(burst), refilledAt: time, suppressed: 0), at: time)
            defer { buckets[key] = bucket }
            guard bucket.tokens >= 1 else {
                bucket.suppressed += 1
                return .suppress
            }
            bucket.tokens -= 1
            defer { bucket.suppressed = 0 }
            return .record(suppressedBefore: bucket.suppressed)
        }
    }

    private func refilled(_ bucket: Bucket, at time: UInt64) -> Bucket {
        var bucket = bucket
        let elapsed = Double(elapsedNanos(since: bucket.refilledAt, now: time)) / 1e9
        bucket.tokens = min(Double(burst), bucket.tokens + elapsed * perSecond)
        bucket.refilledAt = time
        return bucket
    }
}
