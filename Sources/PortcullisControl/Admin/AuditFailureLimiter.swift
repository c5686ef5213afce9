import PortcullisCluster
import Synchronization

/// Decides which refused (unauthenticated) admin calls get an audit entry: a token bucket of
/// `burst` entries refilled at `perSecond`. Without it every refused call wrote an entry, so a
/// flood of them pushed the real entries out of the capped audit stream. Only refusals pass
/// through here; authenticated calls are always audited. Every refusal is still counted
/// (`portcullis_admin_auth_failures_total`), and so is every entry left out
/// (`portcullis_admin_audit_suppressed_total`); the next entry written says how many it follows.
///
/// Per control-plane process: with two control planes the stream takes at most twice as many.
final class AuditFailureLimiter: Sendable {
    typealias Decision = AuditBucket.Decision

    static let defaultBurst = 20
    static let defaultPerSecond = 1.0

    let burst: Int
    let perSecond: Double
    private let bucket: Mutex<AuditBucket>
    private let now: @Sendable () -> UInt64

    /// - Parameter now: monotonic nanoseconds (tests move it by hand).
    init(burst: Int = defaultBurst, perSecond: Double = defaultPerSecond, now: @escaping @Sendable () -> UInt64 = { monotonicNanos() }) {
        self.burst = burst
        self.perSecond = perSecond
        self.now = now
        bucket = Mutex(AuditBucket(burst: burst, at: now()))
    }

    /// Takes one entry from the bucket if there is one.
    func admit() -> Decision {
        let time = now()
        return bucket.withLock { $0.admit(at: time, burst: burst, perSecond: perSecond) }
    }
}
