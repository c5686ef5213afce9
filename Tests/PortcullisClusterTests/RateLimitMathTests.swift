@testable import PortcullisCluster
import Synchronization
import Testing

@Suite("rate-limit math")
struct RateLimitMathTests {
    let second: UInt64 = 1_000_000_000

    @Test("the sliding window weights the previous window by the time left in it")
    func slidingEstimate() {
        var window = SlidingWindow(window: .seconds(1))
        window.advance(to: 10 * second)
        window.add(100)
        window.advance(to: 11 * second + second / 4)
        #expect(window.previous == 100)
        #expect(window.current == 0)
        #expect(abs(window.estimate(at: 11 * second + second / 4) - 75) < 0.001)
        // Projected into the next window, the current count becomes the decaying one.
        window.add(40)
        #expect(abs(window.estimate(at: 12 * second + second / 2) - 20) < 0.001)
        window.advance(to: 13 * second)
        #expect(window.previous == 0, "a gap of more than one window forgets everything")
    }

    @Test("a clock reading taken before another thread moved the window on does not wipe its counts")
    func lateReading() {
        var window = SlidingWindow(window: .seconds(1))
        window.advance(to: 11 * second + 1)
        window.add(7)
        window.advance(to: 11 * second - 1)
        #expect(window.index == 11 && window.current == 7)

        // The same race through a limiter: requests stamped just before the boundary arrive after
        // one stamped just after it, and must still be counted against the full window.
        let clock = ManualClock(start: 21 * second + 1)
        let limiter = LocalRateLimiter(now: { clock.now })
        let policy = RateLimitPolicy(name: "late", key: .subject, limit: 10, window: .seconds(1))
        var admitted = 0
        for _ in 0..<10 where limiter.acquire(policy: policy, key: "k").allowed { admitted += 1 }
        clock.now = 21 * second - 1
        for _ in 0..<10 where limiter.acquire(policy: policy, key: "k").allowed { admitted += 1 }
        #expect(admitted == 10)
    }

    @Test("a local limiter holds at most max_keys keys per policy; a held key keeps its own bucket")
    func localKeyBound() {
        let clock = ManualClock(start: 5 * second)
        let limiter = LocalRateLimiter(now: { clock.now })
        let policy = RateLimitPolicy(name: "p", key: .ip, limit: 2, window: .seconds(10), maxKeys: 16)
        let other = RateLimitPolicy(name: "q", key: .ip, limit: 2, window: .seconds(10), maxKeys: 16)
        var held: [String] = []
        var overflowAllowed = 0
        for index in 0..<1_000 {
            let decision = limiter.acquire(policy: policy, key: "hdr:\(index)", client: "ip:192.0.2.66")
            if decision.overflowed { overflowAllowed += decision.allowed ? 1 : 0 } else { held.append("hdr:\(index)") }
        }
        #expect(held.count <= 16 && !held.isEmpty)
        #expect(overflowAllowed == 2, "one client's overflow key has the policy's limit")
        // A key held before the flood still has its own bucket (one of two used).
        #expect(limiter.acquire(policy: policy, key: held[0], client: "ip:192.0.2.66").allowed)
        #expect(!limiter.acquire(policy: policy, key: held[0], client: "ip:192.0.2.66").allowed)
        // Another policy's keys are bounded separately.
        #expect(!limiter.acquire(policy: other, key: "ip:1").overflowed)
    }

    /// With one overflow key per policy, a client that filled the policy with keys of its choosing
    /// (a header value) had every other client's new key refused for as long as it kept them
    /// alive (an attacker review: a new customer's API key got 429 three times out of three).
    @Test("a client that fills a policy with keys of its choosing exhausts its own overflow key, not the newcomers' of other addresses")
    func overflowSpreadByClient() {
        let clock = ManualClock(start: 5 * second)
        let limiter = LocalRateLimiter(now: { clock.now })
        let policy = RateLimitPolicy(name: "p", key: .header("x-api-key"), limit: 3, window: .seconds(60), maxKeys: 16)
        let attacker = "ip:192.0.2.66"
        for index in 0..<500 { _ = limiter.acquire(policy: policy, key: "hdr:junk-\(index)", client: attacker) }
        #expect(!limiter.acquire(policy: policy, key: "hdr:junk-late", client: attacker).allowed, "the attacker's own overflow key is spent")
        // Newcomers from other addresses: each in its group's overflow key, which the flood did not touch.
        let others = (1...40).map { "ip:198.51.100.\($0)" }.filter {
            ShardedKeys<Int>.stableHash($0) % ShardedKeys<Int>.overflowGroups != ShardedKeys<Int>.stableHash(attacker) % ShardedKeys<Int>.overflowGroups
        }
        #expect(others.count >= 30)
        for (index, client) in others.prefix(10).enumerated() {
            let decision = limiter.acquire(policy: policy, key: "hdr:customer-\(index)", client: client)
            #expect(decision.overflowed && decision.allowed, "a newcomer from \(client) was refused")
        }
        // The keys held stay bounded: overflow keys are not among them, and there are at most 64.
        let held = limiter.keys.shards.reduce(0) { total, shard in total + shard.entries.withLock { $0.count } }
        #expect(held <= 16 + Int(ShardedKeys<Int>.overflowGroups), "\(held) entries")
    }

    /// Without eviction, one burst of distinct keys would leave a standalone gateway's policy full
    /// for good, and every later client in the shared overflow bucket.
    @Test("a full policy evicts keys idle for two windows before sending a new key to the overflow bucket")
    func fullPolicyEvictsIdleKeys() {
        let clock = ManualClock(start: 5 * second)
        let limiter = LocalRateLimiter(now: { clock.now })
        let policy = RateLimitPolicy(name: "p", key: .header("x-key"), limit: 2, window: .seconds(10), maxKeys: 32)
        for index in 0..<300 { _ = limiter.acquire(policy: policy, key: "hdr:flood-\(index)") }
        #expect(limiter.acquire(policy: policy, key: "hdr:late").overflowed, "the policy is full right after the flood")
        clock.now += 25 * second
        // Two new keys: each shard holds up to 2 of the policy's 32, wherever they hash.
        #expect(!limiter.acquire(policy: policy, key: "hdr:new-1").overflowed)
        #expect(!limiter.acquire(policy: policy, key: "hdr:new-2").overflowed)
    }

    @Test("a local limiter admits exactly the limit per window and rejected requests do not count")
    func localLimiter() {
        let clock = ManualClock(start: 5 * second)
        let limiter = LocalRateLimiter(now: { clock.now })
        let policy = RateLimitPolicy(name: "p", key: .subject, limit: 10, window: .seconds(1))
        var admitted = 0
        for _ in 0..<100 where limiter.acquire(policy: policy, key: "k").allowed { admitted += 1 }
        #expect(admitted == 10)
        let rejected = limiter.acquire(policy: policy, key: "k")
        #expect(!rejected.allowed && rejected.remaining == 0 && rejected.resetSeconds >= 1)
        // Two windows later the history is gone; hammering while rejected did not extend the lockout.
        clock.now += 2 * second
        #expect(limiter.acquire(policy: policy, key: "k").allowed)
        #expect(limiter.acquire(policy: policy, key: "other").allowed)
    }

    @Test("burst caps how many pass at once, then requests pass at the refill rate")
    func burst() {
        let clock = ManualClock(start: 5 * second)
        let limiter = LocalRateLimiter(now: { clock.now })
        let policy = RateLimitPolicy(name: "b", key: .ip, limit: 100, window: .seconds(1), burst: 5)
        var admitted = 0
        for _ in 0..<50 where limiter.acquire(policy: policy, key: "k").allowed { admitted += 1 }
        #expect(admitted == 5)
        clock.now += second / 10   // 10 tokens refilled at 100/s
        admitted = 0
        for _ in 0..<50 where limiter.acquire(policy: policy, key: "k").allowed { admitted += 1 }
        #expect(admitted == 5, "the bucket never holds more than burst")
    }

    @Test("a reload's new window and burst apply to a key in use at its next request")
    func reloadedPolicyAppliesToKeyInUse() {
        let clock = ManualClock(start: 1_000_000_000_000)
        let limiter = LocalRateLimiter(now: { clock.now })
        let wide = RateLimitPolicy(name: "p", key: .clientID, limit: 100, window: .seconds(10))
        let burstOfTwo = RateLimitPolicy(name: "p", key: .clientID, limit: 100, window: .seconds(10), burst: 2)
        for _ in 0..<5 { #expect(limiter.acquire(policy: wide, key: "c").allowed) }
        // Reloaded with a burst of 2: at most 2 pass at once now.
        let admitted = (0..<10).filter { _ in limiter.acquire(policy: burstOfTwo, key: "c").allowed }.count
        #expect(admitted == 2, "\(admitted) passed under a burst of 2")
    }

    @Test("the divisor scales limits for fallback mode")
    func divisor() {
        let clock = ManualClock(start: 5 * second)
        let limiter = LocalRateLimiter(now: { clock.now })
        limiter.setDivisor(3)
        let policy = RateLimitPolicy(name: "d", key: .route, limit: 30, window: .seconds(1))
        var admitted = 0
        for _ in 0..<100 where limiter.acquire(policy: policy, key: "k").allowed { admitted += 1 }
        #expect(admitted == 10)
    }
}

final class ManualClock: Sendable {
    private let value: Atomic<UInt64>
    init(start: UInt64) { value = Atomic(start) }
    var now: UInt64 {
        get { value.load(ordering: .relaxed) }
        set { value.store(newValue, ordering: .relaxed) }
    }
}
