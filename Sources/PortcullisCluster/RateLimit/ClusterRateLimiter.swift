import Foundation
import Logging
import Metrics
import PortcullisRedis
import Synchronization

/// Cluster-wide rate limits without a Redis round trip per request.
///
/// Each node decides locally from its view of the cluster's sliding window and a *budget*: how
/// many requests it may admit before the next sync. Every `sync_interval` (50 ms by default) the
/// node adds what it admitted to the shared window counter (`INCRBY`, one pipeline for all active
/// keys), reads back the cluster total, and sets its next budget to its share of what is left:
/// share = its own recent rate / the cluster's recent rate (at least 1 / (2 × live nodes), so a
/// node that just started receiving traffic is not starved). Shares add up to about 1, so the
/// cluster cannot overshoot by N × the limit the way independent node limits do (Kong #6724),
/// and busy nodes get most of the budget, so uneven load is not throttled early (Tyk #1244).
/// Rejected requests consume nothing (Tyk #1876).
///
/// Redis unreachable → *fallback*: each node enforces limit / live nodes from its own counts,
/// exports that mode, and the counts it admitted are pushed to Redis on the first sync after
/// Redis returns (reconciliation).
public final class ClusterRateLimiter: RateLimiting, Sendable {
    struct Entry {
        let policy: RateLimitPolicy
        let key: String
        /// The cluster's window as last synced, plus what this node admitted since.
        var cluster: SlidingWindow
        /// This node's own admissions (fallback decisions, rate estimates).
        var own: SlidingWindow
        var bucket: TokenBucket?
        /// Admitted since the last sync, not yet added to Redis.
        var unsynced: Int = 0
        /// How many more this node may admit before the next sync.
        var budget: Double
        var ownRate: Double = 0
        var othersRate: Double = 0
        /// Cluster total of `syncedWindow` at the last sync.
        var lastClusterTotal: Double = 0
        var syncedWindow: UInt64 = 0
        var lastSeen: UInt64
    }

    private let shards: [LockedShard<Entry>]
    private let fallback = Atomic<Bool>(false)
    private let liveNodes = Atomic<Int>(1)
    private let client: RedisClient
    private let keys: ClusterKeys
    private let logger: Logger
    private let now: @Sendable () -> UInt64

    /// - Parameter now: wall-clock nanoseconds (window boundaries must agree across machines).
    public init(client: RedisClient, keys: ClusterKeys, logger: Logger,
                now: @escaping @Sendable () -> UInt64 = { UInt64(Date().timeIntervalSince1970 * 1e9) }) {
        shards = (0..<16).map { _ in LockedShard() }
        self.client = client
        self.keys = keys
        self.logger = logger
        self.now = now
    }

    public var mode: String { fallback.load(ordering: .relaxed) ? "fallback" : "cluster" }

    /// Live gateway count from membership (shares and the fallback divisor).
    public func setLiveNodes(_ count: Int) {
        liveNodes.store(max(1, count), ordering: .relaxed)
    }

    private func shard(for key: String) -> LockedShard<Entry> {
        shards[Int(UInt(bitPattern: key.hashValue) % UInt(shards.count))]
    }

    // MARK: Hot path

    public func acquire(policy: RateLimitPolicy, key: String) -> RateLimitDecision {
        let now = self.now()
        let nodes = liveNodes.load(ordering: .relaxed)
        let inFallback = fallback.load(ordering: .relaxed)
        let fullKey = policy.name + "\u{0}" + key
        return shard(for: fullKey).entries.withLock { entries in
            var entry = entries[fullKey] ?? Entry(
                policy: policy, key: key, cluster: SlidingWindow(window: policy.window), own: SlidingWindow(window: policy.window),
                bucket: policy.burst.map { TokenBucket(capacity: $0, limit: policy.limit, window: policy.window, now: now) },
                budget: Double(policy.limit) / Double(nodes), lastSeen: now)
            entry.lastSeen = now
            entry.cluster.advance(to: now)
            entry.own.advance(to: now)
            entry.bucket?.refill(to: now)
            let limit = Double(policy.limit)
            let bucketRoom = (entry.bucket?.tokens ?? 1) >= 1
            let admitted: Bool
            let estimate: Double
            let effectiveLimit: Double
            if inFallback {
                effectiveLimit = max(1, (limit / Double(nodes)).rounded(.down))
                estimate = entry.own.estimate(at: now)
                admitted = bucketRoom && estimate + 1 <= effectiveLimit
            } else {
                effectiveLimit = limit
                estimate = entry.cluster.estimate(at: now)
                admitted = bucketRoom && estimate + 1 <= limit && entry.budget >= 1
            }
            var decision: RateLimitDecision
            if admitted {
                entry.cluster.add(1)
                entry.own.add(1)
                entry.bucket?.take()
                entry.unsynced += 1
                entry.budget -= 1
                decision = RateLimitDecision(allowed: true, limit: Int(effectiveLimit),
                                             remaining: max(0, Int((effectiveLimit - estimate - 1).rounded(.down))),
                                             resetSeconds: LocalRateLimiter.seconds((inFallback ? entry.own : entry.cluster).nanosUntilBelow(effectiveLimit, at: now)))
            } else {
                let window = inFallback ? entry.own : entry.cluster
                var wait = window.nanosUntilBelow(effectiveLimit, at: now)
                if !bucketRoom { wait = max(wait, entry.bucket?.nanosUntilToken() ?? 0) }
                decision = RateLimitDecision(allowed: false, limit: Int(effectiveLimit), remaining: 0, resetSeconds: max(1, LocalRateLimiter.seconds(wait)))
            }
            entries[fullKey] = entry
            return decision
        }
    }

    // MARK: Sync

    private struct Pending {
        let fullKey: String
        let redisKey: String
        let previousKey: String
        let window: UInt64
        let windowNanos: UInt64
        let delta: Int
        let needPrevious: Bool
    }

    /// One sync round: push local counts, pull cluster totals, recompute budgets.
    /// Throws when Redis is unreachable (the caller switches to fallback).
    func sync() async throws {
        let now = self.now()
        var pending: [Pending] = []
        for shard in shards {
            shard.entries.withLock { entries in
                for (fullKey, var entry) in entries {
                    let windowNanos = entry.cluster.windowNanos
                    // Forget keys idle for two windows.
                    if now &- entry.lastSeen > 2 * windowNanos && entry.unsynced == 0 {
                        entries[fullKey] = nil
                        continue
                    }
                    let window = now / windowNanos
                    pending.append(Pending(
                        fullKey: fullKey,
                        redisKey: keys.rateLimitWindow(policy: entry.policy.name, key: entry.key, window: window),
                        previousKey: keys.rateLimitWindow(policy: entry.policy.name, key: entry.key, window: window &- 1),
                        window: window, windowNanos: windowNanos, delta: entry.unsynced,
                        needPrevious: entry.syncedWindow != window))
                    entry.unsynced = 0
                    entries[fullKey] = entry
                }
            }
        }
        guard !pending.isEmpty else { return }
        var commands: [[RedisArgument]] = []
        for item in pending {
            commands.append(["INCRBY", RedisArgument(item.redisKey), RedisArgument(item.delta)])
            commands.append(["PEXPIRE", RedisArgument(item.redisKey), RedisArgument(Int(item.windowNanos / 1_000_000) * 3)])
            commands.append(["GET", RedisArgument(item.previousKey)])
        }
        let replies: [Result<RedisValue, RedisError>]
        do {
            replies = try await client.pipeline(commands)
        } catch {
            // Nothing reached Redis: put the counts back so they are reconciled later.
            restore(pending)
            throw error
        }
        let nodes = Double(liveNodes.load(ordering: .relaxed))
        let intervalNow = self.now()
        for (index, item) in pending.enumerated() {
            guard let total = try? replies[index * 3].get().int else { continue }
            let previous = (try? replies[index * 3 + 2].get().int) ?? 0
            shard(for: item.fullKey).entries.withLock { entries in
                guard var entry = entries[item.fullKey] else { return }
                let sameWindow = entry.syncedWindow == item.window
                let othersDelta = sameWindow ? max(0, Double(total) - entry.lastClusterTotal - Double(item.delta)) : 0
                entry.ownRate = 0.5 * entry.ownRate + 0.5 * Double(item.delta)
                entry.othersRate = 0.5 * entry.othersRate + 0.5 * othersDelta
                entry.lastClusterTotal = Double(total)
                entry.syncedWindow = item.window
                // Our admissions since the snapshot above are not in `total` yet.
                if entry.cluster.index == item.window {
                    entry.cluster.set(index: item.window, current: Double(total) + Double(entry.unsynced), previous: Double(previous))
                }
                let demand = entry.ownRate + entry.othersRate
                let share = demand > 0 ? max(entry.ownRate / demand, 1 / (2 * nodes)) : 1 / nodes
                let remaining = Double(entry.policy.limit) - entry.cluster.estimate(at: intervalNow)
                entry.budget = max(0, remaining * share)
                entries[item.fullKey] = entry
            }
        }
    }

    private func restore(_ pending: [Pending]) {
        for item in pending where item.delta > 0 {
            shard(for: item.fullKey).entries.withLock { entries in
                entries[item.fullKey]?.unsynced += item.delta
            }
        }
    }

    /// Runs sync rounds until cancelled, switching between cluster and fallback mode.
    func run(interval: Duration) async {
        let modeGauge = (cluster: Gauge(label: "portcullis_ratelimit_mode", dimensions: [("mode", "cluster")]),
                         fallback: Gauge(label: "portcullis_ratelimit_mode", dimensions: [("mode", "fallback")]))
        let ok = Counter(label: "portcullis_ratelimit_sync_total", dimensions: [("outcome", "ok")])
        let failed = Counter(label: "portcullis_ratelimit_sync_total", dimensions: [("outcome", "error")])
        while !Task.isCancelled {
            do {
                try await sync()
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
