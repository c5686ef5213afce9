import Foundation
import Logging
import Metrics
import PortcullisRedis
import Synchronization

/// Cluster-wide rate limits without a Redis round trip per request.
///
/// Each node admits requests against a *grant*: a number of admissions reserved for it in the
/// shared window counter in Redis. Every `sync_interval` (50 ms by default) one Lua script per
/// active key, all in one pipeline, settles the last grant (adds what was used beyond it, gives
/// back what was not) and reserves the next one: as much as this node used recently (×1.25, +1),
/// but never more than the sliding window has room for. Because every admission is reserved in
/// Redis before it happens, the cluster as a whole cannot exceed the limit, however the load is
/// spread (Kong #6724); because busy nodes ask for more, uneven load is not throttled early
/// (Tyk #1244); rejected requests reserve nothing (Tyk #1876). A key new to a node starts with a
/// small local grant (`minimumGrant`) so its first requests are not refused while the first sync
/// is pending; that is the only admission not reserved in advance, and it is settled at the
/// first sync.
///
/// Redis unreachable → *fallback*: each node enforces limit / live nodes from its own counts,
/// exports that mode, and what it admitted is added to Redis by the first sync after Redis
/// returns (reconciliation).
public final class ClusterRateLimiter: RateLimiting, Sendable {
    struct Entry {
        var policy: RateLimitPolicy
        let key: String
        /// Admissions left before the next sync.
        var grant: Int
        /// Part of the current grant that is reserved in Redis (the rest was a local start-up grant).
        var reserved: Int
        /// Admitted since the last sync.
        var used = 0
        /// Refused since the last sync (demand the grant did not cover).
        var refused = 0
        /// Recent demand per sync interval (EWMA of admitted + refused): what the next grant asks for.
        var rate: Double = 0
        /// Window index of the counter `reserved` sits in.
        var reservedWindow: UInt64
        /// This node's own admissions, for fallback decisions.
        var own: SlidingWindow
        var bucket: TokenBucket?
        /// The cluster's count at the last sync, for the RateLimit-Remaining header.
        var clusterCount: Double = 0
        var lastSeen: UInt64

        /// The policy of a reload, for a key in use (a key is only dropped after a quiet window,
        /// so without this a client that kept sending kept the limit it started under). A
        /// tighter limit cuts what is left of the grant to the start-up grant — the unused rest is
        /// given back at the next sync, which asks under the new limit; the window and the burst
        /// bucket are remade when their shape changed.
        mutating func adopt(_ new: RateLimitPolicy, now: UInt64, minimumGrant: Int) {
            if new.window != policy.window { own = SlidingWindow(window: new.window) }
            if new.window != policy.window || new.burst != policy.burst || new.limit != policy.limit {
                bucket = new.burst.map { TokenBucket(capacity: $0, limit: new.limit, window: new.window, now: now) }
            }
            if new.limit < policy.limit { grant = min(grant, minimumGrant) }
            policy = new
        }
    }

    private let keyed: ShardedKeys<Entry>
    private let fallback = Atomic<Bool>(false)
    private let liveNodes = Atomic<Int>(1)
    private let syncIntervalNanos = Atomic<UInt64>(50_000_000)
    /// What the node's other Redis traffic last found; decides the mode while no key is active.
    private let redisReachable = Atomic<Bool>(true)
    private let client: RedisClient
    private let keys: ClusterKeys
    private let logger: Logger
    private let now: @Sendable () -> UInt64

    /// - Parameter now: wall-clock nanoseconds (window boundaries must agree across machines).
    public init(client: RedisClient, keys: ClusterKeys, logger: Logger,
                now: @escaping @Sendable () -> UInt64 = { UInt64(Date().timeIntervalSince1970 * 1e9) }) {
        keyed = ShardedKeys(count: 16)
        self.client = client
        self.keys = keys
        self.logger = logger
        self.now = now
    }

    public var mode: String { fallback.load(ordering: .relaxed) ? "fallback" : "cluster" }

    /// Told by the node's periodic Redis check, so the mode is right before the next request.
    public func setRedisReachable(_ reachable: Bool) {
        redisReachable.store(reachable, ordering: .relaxed)
    }

    /// Live gateway count from membership (start-up grants and the fallback divisor).
    public func setLiveNodes(_ count: Int) {
        liveNodes.store(max(1, count), ordering: .relaxed)
    }

    private func shard(for fullKey: String) -> LockedShard<Entry> {
        keyed.shard(for: fullKey)
    }

    // MARK: Hot path

    public func acquire(policy: RateLimitPolicy, key: String, client: () -> String) -> RateLimitDecision {
        let now = self.now()
        let nodes = liveNodes.load(ordering: .relaxed)
        let inFallback = fallback.load(ordering: .relaxed)
        var (decision, overflowed) = keyed.withEntry(policy: policy, key: key, client: client, now: now, make: { key in
            let own = SlidingWindow(window: policy.window)
            return Entry(policy: policy, key: key, grant: Self.minimumGrant(policy, nodes: nodes), reserved: 0,
                         reservedWindow: now / own.windowNanos, own: own,
                         bucket: policy.burst.map { TokenBucket(capacity: $0, limit: policy.limit, window: policy.window, now: now) },
                         lastSeen: now)
        }, isIdle: { entry in
            // What `sync` would drop: nothing to settle, and unused for a window.
            entry.used == 0 && entry.reserved == 0 && elapsedNanos(since: entry.lastSeen, now: now) > entry.own.windowNanos
        }) { entries, fullKey -> RateLimitDecision in
            guard var entry = entries[fullKey] else { return RateLimitDecision(allowed: false, limit: policy.limit, remaining: 0, resetSeconds: 1) }
            if entry.policy != policy { entry.adopt(policy, now: now, minimumGrant: Self.minimumGrant(policy, nodes: nodes)) }
            entry.lastSeen = now
            entry.own.advance(to: now)
            entry.bucket?.refill(to: now)
            let bucketRoom = (entry.bucket?.tokens ?? 1) >= 1
            let decision: RateLimitDecision
            if inFallback {
                let limit = max(1, Double(policy.limit / nodes))
                if bucketRoom, entry.own.estimate(at: now) + 1 <= limit {
                    admit(&entry)
                    decision = RateLimitDecision(allowed: true, limit: Int(limit), remaining: max(0, Int(limit - entry.own.estimate(at: now))),
                                                 resetSeconds: LocalRateLimiter.seconds(entry.own.nanosUntilBelow(limit, at: now)))
                } else {
                    let wait = max(entry.own.nanosUntilBelow(limit, at: now), bucketRoom ? 0 : entry.bucket?.nanosUntilToken() ?? 0)
                    decision = RateLimitDecision(allowed: false, limit: Int(limit), remaining: 0, resetSeconds: max(1, LocalRateLimiter.seconds(wait)))
                }
            } else if bucketRoom, entry.grant >= 1 {
                admit(&entry)
                entry.grant -= 1
                let remaining = Int(max(0, Double(policy.limit) - entry.clusterCount)) + entry.grant
                decision = RateLimitDecision(allowed: true, limit: policy.limit, remaining: min(policy.limit, remaining), resetSeconds: 1)
            } else {
                if bucketRoom { entry.refused += 1 }
                let wait = bucketRoom ? entry.own.windowNanos / 10 : entry.bucket?.nanosUntilToken() ?? 0
                decision = RateLimitDecision(allowed: false, limit: policy.limit, remaining: 0, resetSeconds: max(1, LocalRateLimiter.seconds(wait)))
            }
            entries[fullKey] = entry
            return decision
        }
        decision.overflowed = overflowed
        return decision
    }

    /// The least a node holds for a key: 5 % of the limit split over the nodes (at least 1), so
    /// a burst on a quiet key — a client's first few calls — is not refused between syncs. It is
    /// also the start-up grant of a key new to the node, the one admission not reserved in Redis
    /// beforehand, which bounds what a node can admit over the limit to 5 % / N.
    static func minimumGrant(_ policy: RateLimitPolicy, nodes: Int) -> Int {
        max(1, Int((Double(policy.limit) / Double(20 * max(1, nodes))).rounded(.up)))
    }

    private func admit(_ entry: inout Entry) {
        entry.own.add(1)
        entry.bucket?.take()
        entry.used += 1
    }

    // MARK: Sync

    /// Settles a node's grant and reserves the next one in one step.
    /// KEYS: current window counter, previous window counter, counter the old reservation sits in.
    /// ARGV: adjustment for KEYS[3] (used beyond the reservation minus unused reservation),
    /// ask, limit, weight of the previous window at the next sync, counter TTL in ms.
    ///
    /// A count below zero is no one's use (a node gives back at most what it reserved): one a
    /// Redis writer planted (`INCRBY -1e18`) would leave room for a whole limit at every sync of
    /// every node, letting through many times the limit. The current window's is set back to
    /// zero, the previous window's counts as zero.
    static let grantScript = RedisScript("""
    local adjust = tonumber(ARGV[1])
    if adjust ~= 0 then redis.call('INCRBY', KEYS[3], adjust) end
    local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
    if cur < 0 then
      redis.call('SET', KEYS[1], '0')
      cur = 0
    end
    local prev = math.max(0, tonumber(redis.call('GET', KEYS[2]) or '0'))
    local room = math.floor(tonumber(ARGV[3]) - prev * tonumber(ARGV[4]) - cur)
    local grant = math.min(tonumber(ARGV[2]), math.max(0, room))
    if grant > 0 then cur = redis.call('INCRBY', KEYS[1], grant) end
    redis.call('PEXPIRE', KEYS[1], ARGV[5])
    if KEYS[3] ~= KEYS[1] then redis.call('PEXPIRE', KEYS[3], ARGV[5]) end
    return {grant, cur, prev}
    """)

    private struct Pending {
        let fullKey: String
        let window: UInt64
        let used: Int
        let demand: Int
        let reserved: Int
        let reservedWindow: UInt64
        let ask: Int
        let arguments: [RedisArgument]
    }

    /// One sync round. Throws when Redis is unreachable (the caller switches to fallback).
    func sync(interval: Duration = .milliseconds(50)) async throws {
        let now = self.now()
        let intervalNanos = interval.wholeNanoseconds
        let nodes = liveNodes.load(ordering: .relaxed)
        var pending: [Pending] = []
        for shard in keyed.shards {
            shard.entries.withLock { entries in
                for (fullKey, var entry) in entries.all {
                    let windowNanos = entry.own.windowNanos
                    let idle = elapsedNanos(since: entry.lastSeen, now: now) > windowNanos
                    if idle, entry.used == 0, entry.reserved == 0 {
                        entries[fullKey] = nil
                        continue
                    }
                    let window = now / windowNanos
                    // Weight of the previous window at the time of the next sync (0 once past it).
                    let elapsed = min(1, Double(now % windowNanos + intervalNanos) / Double(windowNanos))
                    // An idle key only settles; it reserves nothing more.
                    // Ask for what this node was asked for lately: refusals count as demand, so a
                    // node whose traffic grows gets a matching grant at the next sync.
                    let demand = entry.used + entry.refused
                    let ask = idle ? 0 : max(Self.minimumGrant(entry.policy, nodes: nodes), Int((max(entry.rate, Double(demand)) * 1.25).rounded(.up)) + 1)
                    let adjust = entry.used - entry.reserved
                    let policy = entry.policy
                    let current = keys.rateLimitWindow(policy: policy.name, key: entry.key, window: window)
                    pending.append(Pending(
                        fullKey: fullKey, window: window, used: entry.used, demand: demand, reserved: entry.reserved, reservedWindow: entry.reservedWindow, ask: ask,
                        arguments: [
                            "EVALSHA", RedisArgument(Self.grantScript.sha1), "3", RedisArgument(current),
                            RedisArgument(keys.rateLimitWindow(policy: policy.name, key: entry.key, window: window &- 1)),
                            RedisArgument(keys.rateLimitWindow(policy: policy.name, key: entry.key, window: entry.reservedWindow)),
                            RedisArgument(adjust), RedisArgument(ask), RedisArgument(policy.limit),
                            RedisArgument(String(format: "%.6f", 1 - elapsed)), RedisArgument(Int(windowNanos / 1_000_000) * 3),
                        ]))
                    // Until the reply, admissions continue against what is left of the grant.
                    entry.used = 0
                    entry.refused = 0
                    entry.reserved = 0
                    entries[fullKey] = entry
                }
            }
        }
        guard !pending.isEmpty else {
            if !redisReachable.load(ordering: .relaxed) { throw RedisError.connectionClosed("Redis unreachable (periodic check)") }
            return
        }
        var replies: [Result<RedisValue, RedisError>]
        do {
            replies = try await client.pipeline(pending.map(\.arguments))
            if replies.contains(where: { if case .failure(let error) = $0 { error.errorCode == "NOSCRIPT" } else { false } }) {
                _ = try await client.send("SCRIPT", "LOAD", RedisArgument(Self.grantScript.source))
                replies = try await client.pipeline(pending.map(\.arguments))
            }
        } catch {
            restore(pending)
            throw error
        }
        for (item, reply) in zip(pending, replies) {
            guard case .success(let value) = reply, let parts = value.array, parts.count == 3,
                  let grant = parts[0].int, let count = parts[1].int else {
                restore([item])
                continue
            }
            shard(for: item.fullKey).entries.withLock { entries in
                guard var entry = entries[item.fullKey] else { return }
                entry.rate = 0.5 * entry.rate + 0.5 * Double(item.demand)
                // Admissions since the snapshot used capacity the settlement gave back: they are
                // charged to the new reservation (and stay in `used`, which it is settled against).
                // Redis's numbers are clamped first: a writer without the cluster secret can put any
                // integer in a counter, and arithmetic out of Int's range traps.
                let grant = min(max(0, Int(grant)), entry.policy.limit)
                entry.grant = max(0, grant - entry.used)
                entry.reserved = grant
                entry.reservedWindow = item.window
                entry.clusterCount = min(max(0, Double(count)), Double(Int32.max))
                entries[item.fullKey] = entry
            }
        }
    }

    /// Nothing reached Redis: keep the counts so the next sync settles them.
    private func restore(_ pending: [Pending]) {
        for item in pending {
            shard(for: item.fullKey).entries.withLock { entries in
                guard var entry = entries[item.fullKey] else { return }
                entry.used += item.used
                entry.reserved += item.reserved
                entry.reservedWindow = item.reservedWindow
                entries[item.fullKey] = entry
            }
        }
    }

    /// Runs sync rounds until cancelled, switching between cluster and fallback mode.
    func run(interval: Duration) async {
        syncIntervalNanos.store(interval.wholeNanoseconds,
                                ordering: .relaxed)
        let modeGauge = (cluster: Gauge(label: "portcullis_ratelimit_mode", dimensions: [("mode", "cluster")]),
                         fallback: Gauge(label: "portcullis_ratelimit_mode", dimensions: [("mode", "fallback")]))
        let ok = Counter(label: "portcullis_ratelimit_sync_total", dimensions: [("outcome", "ok")])
        let failed = Counter(label: "portcullis_ratelimit_sync_total", dimensions: [("outcome", "error")])
        while !Task.isCancelled {
            do {
                try await sync(interval: interval)
                ok.increment()
                if fallback.exchange(false, ordering: .relaxed) {
                    logger.info("rate limits back in cluster mode; local counts reconciled")
                }
            } catch {
                failed.increment()
                if !fallback.exchange(true, ordering: .relaxed) {
                    logger.warning("rate limits in fallback mode (limit / live nodes per node): Redis unreachable",
                                   metadata: ["error": "\(error)", "live_nodes": "\(liveNodes.load(ordering: .relaxed))"])
                }
            }
            let inFallback = fallback.load(ordering: .relaxed)
            modeGauge.cluster.record(inFallback ? 0 : 1)
            modeGauge.fallback.record(inFallback ? 1 : 0)
            try? await Task.sleep(for: interval)
        }
    }
}
