import PortcullisCluster
import PortcullisJOSE
import Prometheus
import Synchronization

/// Decides which of the entries that end users and OAuth clients can cause at will — a user's own
/// sign-in, consent and sign-out; a client's reused authorization codes and refresh tokens (a
/// signed-in user of a public client can redeem codes twice in a loop) — get an audit entry: a
/// token bucket per actor of `burst` entries refilled at
/// `perSecond`. Those actions need no admin credential, and one signed-in user re-posting the
/// consent form as fast as the control plane answers would otherwise push operators' entries out
/// of the capped audit stream. Every entry left out is counted
/// (`portcullis_admin_audit_suppressed_total`), and the actor's next entry written says how many
/// it follows (`suppressed_before`).
///
/// Per control-plane process, at most `maxActors` buckets: past that, buckets that have refilled
/// (their actor idle) are dropped, and while none has, newcomers share one bucket.
final class AuditActorLimiter: Sendable {
    static let defaultBurst = 10
    /// One entry per 6 s: 10 a minute per user.
    static let defaultPerSecond = 1.0 / 6
    static let maxActors = 4096
    private static let overflow = ExactKey("\u{0}overflow")

    let burst: Int
    let perSecond: Double
    private let buckets = Mutex<[ExactKey: AuditBucket]>([:])
    private let now: @Sendable () -> UInt64

    /// - Parameter now: monotonic nanoseconds (tests move it by hand).
    init(burst: Int = defaultBurst, perSecond: Double = defaultPerSecond, now: @escaping @Sendable () -> UInt64 = { monotonicNanos() }) {
        self.burst = burst
        self.perSecond = perSecond
        self.now = now
    }

    /// Records `entry` in `audit` if the bucket of `key` (by default its actor) has an entry left,
    /// else counts it in `suppressed`.
    func record(_ entry: AuditLog.Entry, key: String? = nil, in audit: AuditLog, suppressed: Prometheus.Counter) async {
        switch admit(key ?? entry.actor) {
        case .record(let suppressedBefore):
            var entry = entry
            if suppressedBefore > 0 { entry.details["suppressed_before"] = String(suppressedBefore) }
            await audit.record(entry)
        case .suppress:
            suppressed.increment()
        }
    }

    /// Takes one entry from `actor`'s bucket if there is one.
    func admit(_ actor: String) -> AuditBucket.Decision {
        let time = now()
        let (burst, perSecond) = (burst, perSecond)
        return buckets.withLock { buckets in
            var key = ExactKey(actor)
            if buckets[key] == nil, buckets.count >= Self.maxActors {
                // Buckets that have refilled are as good as new: their actors are idle.
                buckets = buckets.filter { _, bucket in
                    var bucket = bucket
                    bucket.refill(at: time, burst: burst, perSecond: perSecond)
                    return bucket.tokens < Double(burst)
                }
                if buckets.count >= Self.maxActors { key = Self.overflow }
            }
            return buckets[key, default: AuditBucket(burst: burst, at: time)].admit(at: time, burst: burst, perSecond: perSecond)
        }
    }
}
