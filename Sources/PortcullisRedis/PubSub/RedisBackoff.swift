/// Reconnect delays: `initial × 2^attempt`, capped at `maximum`, each scaled by a random factor in
/// `[1 − jitter, 1 + jitter]` so that many subscribers do not reconnect in lockstep.
public struct RedisBackoff: Sendable {
    /// The delay before attempt 0, doubled for each later attempt.
    public var initial: Duration = .milliseconds(50)
    /// The cap on the doubled delay, before jitter; a `maximum` below `initial` counts as `initial`.
    public var maximum: Duration = .seconds(2)
    /// Fraction of the delay, 0…1.
    public var jitter: Double = 0.2

    /// A backoff from `initial` doubling up to `maximum`, with `jitter` as a fraction of each delay.
    public init(initial: Duration = .milliseconds(50), maximum: Duration = .seconds(2), jitter: Double = 0.2) {
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
    }

    /// 50 ms doubling to 2 s, with 20 % jitter.
    public static let `default` = RedisBackoff()

    /// The delay before reconnect attempt `attempt` (0 for the first attempt after a failure).
    public func delay(forAttempt attempt: Int) -> Duration {
        let initialSeconds = seconds(initial)
        let maximumSeconds = max(seconds(maximum), initialSeconds)
        let base = min(maximumSeconds, initialSeconds * Double(1 << min(max(attempt, 0), 30)))
        let spread = min(max(jitter, 0), 1)
        let factor = spread > 0 ? Double.random(in: (1 - spread)...(1 + spread)) : 1
        return .nanoseconds(Int64(base * factor * 1e9))
    }

    private func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
    }
}
