@testable import PortcullisCluster
import Logging
import NIOPosix
import PortcullisRedis
import PortcullisTestSupport
import Testing

@Suite("cluster rate limiter in process, against a real Redis")
struct ClusterRateLimiterTests {
    let second: UInt64 = 1_000_000_000
    let keys = ClusterKeys(prefix: "t:")

    /// The limiter with a manual wall clock and its own redis-server, stopped at the end.
    func withLimiter(_ body: (ClusterRateLimiter, ManualClock, RedisServerFixture) async throws -> Void) async throws {
        let redis = try await RedisServerFixture.start()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let client = RedisClient(configuration: redis.configuration(), eventLoopGroup: group, logger: Logger(label: "test"))
        let clock = ManualClock(start: 1_000 * second + second / 2)
        let limiter = ClusterRateLimiter(client: client, keys: keys, logger: Logger(label: "test"), now: { clock.now })
        do {
            try await body(limiter, clock, redis)
        } catch {
            Issue.record(error)
        }
        await client.close()
        try? await group.shutdownGracefully()
        await redis.shutdown()
    }

    @Test("admissions are reserved in Redis and settled exactly at the next sync")
    func settles() async throws {
        try await withLimiter { limiter, clock, redis in
            let policy = RateLimitPolicy(name: "p", key: .clientID, limit: 1000, window: .seconds(10))
            for _ in 0..<30 { #expect(limiter.acquire(policy: policy, key: "c").allowed) }
            try await limiter.sync(interval: .milliseconds(50))
            clock.now += 10_000_000
            let counter = keys.rateLimitWindow(policy: "p", key: "c", window: clock.now / (10 * second))
            // 30 used, plus the next grant reserved: 5 % of the limit at least, or recent demand × 1.25 + 1.
            #expect(Int(try redis.cli("GET", counter)) == 30 + 50)
            for _ in 0..<10 { #expect(limiter.acquire(policy: policy, key: "c").allowed) }
            try await limiter.sync(interval: .milliseconds(50))
            // The unused 40 of the grant were given back, and a new one reserved.
            #expect(Int(try redis.cli("GET", counter)) == 30 + 10 + 50)
        }
    }

    /// The build before kept, for a key in use, the policy it was first seen under: a client that
    /// kept sending kept its old limit after a reload, either way (an attacker review).
    @Test("a reload's new limit applies to a key in use at its next request, tighter or looser")
    func reloadedLimitAppliesToKeyInUse() async throws {
        try await withLimiter { limiter, clock, _ in
            let loose = RateLimitPolicy(name: "p", key: .clientID, limit: 200, window: .seconds(10))
            let tight = RateLimitPolicy(name: "p", key: .clientID, limit: 5, window: .seconds(10))
            for _ in 0..<4 {
                for _ in 0..<5 { #expect(limiter.acquire(policy: loose, key: "c").allowed) }
                try await limiter.sync(interval: .milliseconds(50))
                clock.now += 50_000_000
            }
            // Reloaded to 5 per 10 s: 20 already counted in the window, so nothing more passes.
            var admitted = 0
            for _ in 0..<10 {
                admitted += (0..<10).filter { _ in limiter.acquire(policy: tight, key: "c").allowed }.count
                try await limiter.sync(interval: .milliseconds(50))
                clock.now += 50_000_000
            }
            #expect(admitted <= 1, "\(admitted) admitted under the tightened limit")
            #expect(limiter.acquire(policy: tight, key: "c").limit == 5)
            // Loosened again: the key gets the room of the new limit.
            admitted = 0
            for _ in 0..<10 {
                admitted += (0..<10).filter { _ in limiter.acquire(policy: loose, key: "c").allowed }.count
                try await limiter.sync(interval: .milliseconds(50))
                clock.now += 50_000_000
            }
            #expect(admitted >= 50, "only \(admitted) of 100 admitted after loosening to 200")
        }
    }

    @Test("a counter a Redis writer sets to Int64's extremes traps nothing: requests are still decided, and never beyond the limit")
    func extremeCountersFromRedis() async throws {
        try await withLimiter { limiter, clock, redis in
            let policy = RateLimitPolicy(name: "p", key: .clientID, limit: 100, window: .seconds(10))
            #expect(limiter.acquire(policy: policy, key: "c").allowed)
            try await limiter.sync(interval: .milliseconds(50))
            let counter = keys.rateLimitWindow(policy: "p", key: "c", window: clock.now / (10 * second))
            for planted in ["-9223372036854775808", "-9223372036854775000", "9223372036854775000"] {
                _ = try redis.cli("SET", counter, planted)
                try? await limiter.sync(interval: .milliseconds(50))
                let admitted = (0..<300).filter { _ in limiter.acquire(policy: policy, key: "c").allowed }.count
                #expect(admitted <= policy.limit, "\(planted): \(admitted) admitted")
                let decision = limiter.acquire(policy: policy, key: "c")
                #expect((0...policy.limit).contains(decision.remaining), "\(planted): remaining \(decision.remaining)")
            }
        }
    }

    /// The grant script took a planted negative count as room: every sync granted up to a whole
    /// limit again (an attacker review admitted 1 383 of 1 383 requests against 20 a window).
    @Test("a counter a Redis writer sets far below zero counts from zero: over a whole window of syncs, no more than the limit is admitted")
    func negativeCounterCountsFromZero() async throws {
        try await withLimiter { limiter, clock, redis in
            let policy = RateLimitPolicy(name: "p", key: .clientID, limit: 20, window: .seconds(10))
            for (index, planted) in ["-1000000000", "-9223372036854775000"].enumerated() {
                let key = "neg\(index)"
                clock.now = UInt64(index + 2) * 1_000 * second
                let window = clock.now / (10 * second)
                _ = try redis.cli("SET", keys.rateLimitWindow(policy: "p", key: key, window: window), planted)
                _ = try redis.cli("SET", keys.rateLimitWindow(policy: "p", key: key, window: window - 1), planted)
                var admitted = 0
                for _ in 0..<40 {
                    admitted += (0..<50).filter { _ in limiter.acquire(policy: policy, key: key).allowed }.count
                    try await limiter.sync(interval: .milliseconds(50))
                    clock.now += 100_000_000
                }
                // 40 syncs 100 ms apart: 4 s, all in one window; the start-up grant (one) aside.
                #expect(admitted <= policy.limit + 1, "\(planted): \(admitted) admitted")
                #expect(Int(try redis.cli("GET", keys.rateLimitWindow(policy: "p", key: key, window: window)).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1 >= 0)
            }
        }
    }

    /// A client flooding distinct keys (a header it chooses) would give every sync one script per
    /// key; with `max_keys` the keys beyond the bound share the client's overflow key, and Redis
    /// sees at most that many.
    @Test("a flood of distinct keys is bounded by max_keys: new keys share the client's overflow key and Redis holds at most max_keys counters and that one")
    func keyFlood() async throws {
        try await withLimiter { limiter, clock, redis in
            let policy = RateLimitPolicy(name: "p", key: .header("x-key"), limit: 3, window: .seconds(10), maxKeys: 32)
            var overflowed = 0, allowed = 0
            for index in 0..<2_000 {
                let decision = limiter.acquire(policy: policy, key: "hdr:\(index)", client: "ip:192.0.2.66")
                if decision.overflowed { overflowed += 1 }
                if decision.allowed { allowed += 1 }
            }
            #expect(overflowed >= 2_000 - 32)
            // Each held key admits at most its start-up grant here; the overflow bucket the same.
            #expect(allowed <= 33 * 3)
            try await limiter.sync(interval: .milliseconds(50))
            clock.now += 10_000_000
            let counters = try redis.cli("KEYS", "t:*").split(separator: "\n").filter { !$0.isEmpty }
            #expect(counters.count <= 33, "\(counters.count) counters in Redis")
            #expect(counters.contains { $0.contains("_overflow") })
        }
    }

    @Test("a request stamped after the sync read its clock does not make a busy key look idle")
    func lateStamp() async throws {
        try await withLimiter { limiter, clock, _ in
            let policy = RateLimitPolicy(name: "p", key: .clientID, limit: 1000, window: .seconds(10))
            #expect(limiter.acquire(policy: policy, key: "c").allowed)
            try await limiter.sync(interval: .milliseconds(50))
            clock.now += 20_000_000
            #expect(limiter.acquire(policy: policy, key: "c").allowed)
            // The sync task read the clock a moment before the event loop stamped that request.
            clock.now -= 1_000
            try await limiter.sync(interval: .milliseconds(50))
            clock.now += 2_000
            var admitted = 0
            for _ in 0..<40 where limiter.acquire(policy: policy, key: "c").allowed { admitted += 1 }
            #expect(admitted == 40, "a live key was given no grant")
        }
    }
}
