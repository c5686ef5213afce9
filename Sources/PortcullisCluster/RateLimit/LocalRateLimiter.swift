import NIOCore
import Synchronization

/// A rate limiter that only knows this node's traffic. Used by standalone gateways, and scaled
/// to `limit / live nodes` by the cluster limiter while Redis is unreachable.
///
/// Keys are spread over shards, each with its own lock, so concurrent event loops rarely meet.
public final class LocalRateLimiter: RateLimiting, Sendable {
    struct State {
        /// The policy the window and bucket were made for.
        var policy: RateLimitPolicy
        var window: SlidingWindow
        var bucket: TokenBucket?
        var lastSeen: UInt64
    }

    let keys: ShardedKeys<State>
    /// Divides every policy's limit (live node count in fallback mode); 1 when standalone.
    private let divisor = Atomic<Int>(1)
    private let now: @Sendable () -> UInt64

    public init(shardCount: Int = 16, now: @escaping @Sendable () -> UInt64 = { NIODeadline.now().uptimeNanoseconds }) {
        keys = ShardedKeys(count: shardCount)
        self.now = now
    }

    public var mode: String { "local" }

    /// Enforce `limit / n` per node (the cluster's fallback while Redis is down).
    public func setDivisor(_ n: Int) {
        divisor.store(max(1, n), ordering: .relaxed)
    }

    public func acquire(policy: RateLimitPolicy, key: String, client: () -> String) -> RateLimitDecision {
        let now = self.now()
        let share = divisor.load(ordering: .relaxed)
        let limit = max(1, policy.limit / share)
        // An entry idle for two of its own windows holds nothing the next decision needs.
        let isIdle = { (state: State) in elapsedNanos(since: state.lastSeen, now: now) >= 2 * state.window.windowNanos }
        var (decision, overflowed) = keys.withEntry(policy: policy, key: key, client: client, now: now, make: { _ in
            State(policy: policy, window: SlidingWindow(window: policy.window),
                  bucket: policy.burst.map { TokenBucket(capacity: max(1, $0 / share), limit: limit, window: policy.window, now: now) },
                  lastSeen: now)
        }, isIdle: isIdle) { entries, fullKey in
            guard var state = entries[fullKey] else { return RateLimitDecision(allowed: false, limit: limit, remaining: 0, resetSeconds: 1) }
            if state.policy != policy {
                // A reload changed the policy: a key in use takes it at its next request (the
                // limit is read from `policy` anyway; the window and the bucket are remade when
                // their shape changed, the counts kept when the window stayed).
                if state.policy.window != policy.window { state.window = SlidingWindow(window: policy.window) }
                if state.policy.window != policy.window || state.policy.burst != policy.burst || state.policy.limit != policy.limit {
                    state.bucket = policy.burst.map { TokenBucket(capacity: max(1, $0 / share), limit: limit, window: policy.window, now: now) }
                }
                state.policy = policy
            }
            let decision = Self.decide(&state, limit: limit, now: now)
            state.lastSeen = now
            entries[fullKey] = state
            if entries.count > entries.sweepAt {
                // Amortised: the next sweep waits until the map doubled again.
                entries.removeAll(where: isIdle)
                entries.sweepAt = max(10_000, 2 * entries.count)
            }
            return decision
        }
        decision.overflowed = overflowed
        return decision
    }

    /// Admits one request if both the window and the burst bucket have room; a rejected request
    /// consumes neither (Tyk #1876: rejected traffic must not keep a client locked out).
    static func decide(_ state: inout State, limit: Int, now: UInt64) -> RateLimitDecision {
        state.window.advance(to: now)
        state.bucket?.refill(to: now)
        let estimate = state.window.estimate(at: now)
        let windowRoom = estimate + 1 <= Double(limit)
        let bucketRoom = (state.bucket?.tokens ?? 1) >= 1
        if windowRoom && bucketRoom {
            state.window.add(1)
            state.bucket?.take()
            let remaining = max(0, Int((Double(limit) - state.window.estimate(at: now)).rounded(.down)))
            let reset = state.window.nanosUntilBelow(Double(limit), at: now)
            return RateLimitDecision(allowed: true, limit: limit, remaining: remaining, resetSeconds: seconds(reset))
        }
        let wait = max(windowRoom ? 0 : state.window.nanosUntilBelow(Double(limit), at: now),
                       bucketRoom ? 0 : state.bucket?.nanosUntilToken() ?? 0)
        return RateLimitDecision(allowed: false, limit: limit, remaining: 0, resetSeconds: max(1, seconds(wait)))
    }

    static func seconds(_ nanos: UInt64) -> Int {
        Int((nanos + 999_999_999) / 1_000_000_000)
    }
}
