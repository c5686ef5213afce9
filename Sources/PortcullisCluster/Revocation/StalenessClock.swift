import Synchronization

/// How old a node's revocation state is, and whether that is too old (fail closed).
public final class StalenessClock: Sendable {
    private let limitNanos: UInt64?
    private let confirmedAt = Atomic<UInt64>(0)
    private let now: @Sendable () -> UInt64

    /// - Parameter limit: beyond this age `RevocationSet.check` answers `.stale`; nil: never.
    public init(limit: Duration?, now: @escaping @Sendable () -> UInt64 = { monotonicNanos() }) {
        limitNanos = limit.map(\.wholeNanoseconds)
        self.now = now
        confirmedAt.store(now(), ordering: .relaxed)
    }

    /// Redis confirmed the state is current.
    public func confirm() {
        confirmedAt.store(now(), ordering: .relaxed)
    }

    /// Seconds since the last confirmation.
    public var ageSeconds: Double {
        Double(elapsedNanos(since: confirmedAt.load(ordering: .relaxed), now: now())) / 1e9
    }

    /// The age in whole seconds when it exceeds the limit (the node fails closed), else nil.
    public func exceededAge() -> Int? {
        guard let limitNanos else { return nil }
        let age = elapsedNanos(since: confirmedAt.load(ordering: .relaxed), now: now())
        return age > limitNanos ? Int(age / 1_000_000_000) : nil
    }
}
