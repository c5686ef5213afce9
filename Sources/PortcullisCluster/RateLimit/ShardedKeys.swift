import Synchronization

/// A rate limiter's state per key, spread over shards that each have their own lock (so
/// concurrent event loops rarely meet), with each policy's keys bounded by
/// `RateLimitPolicy.maxKeys`: keys come from clients (a header value, an IPv6 address), and
/// without a bound a client could grow the map — and a cluster limiter's Redis work per sync —
/// without limit. A request whose key would go over the bound is counted under one of the
/// policy's `overflowGroups` overflow keys instead, chosen by the requesting client's address, each
/// with the policy's limit: keys already held keep their buckets, new ones share by address. With
/// one shared overflow key, a client that filled the policy with keys of its choosing (a header
/// value) would keep every newcomer — every other client's new key — refused for as long as it
/// went on; instead it exhausts its own group, which about one newcomer in `overflowGroups`
/// shares. To spend every group a client needs as many addresses (hence 1 024 groups, so that
/// the /64s of one /56 spend few of them, and IPv6 clients grouped by /48:
/// `RateLimitKey.client`). Overflow keys do not count toward the bound.
final class ShardedKeys<Value: Sendable>: Sendable {
    let shards: [LockedShard<Value>]
    /// 100 ms, in nanoseconds.
    static var evictionScanInterval: UInt64 { 100_000_000 }
    /// How many overflow keys a full policy spreads new keys over.
    static var overflowGroups: UInt64 { 1024 }

    init(count: Int) {
        shards = (0..<max(1, count)).map { _ in LockedShard() }
    }

    func shard(for fullKey: String) -> LockedShard<Value> {
        shards[Int(UInt(bitPattern: fullKey.hashValue) % UInt(shards.count))]
    }

    /// Runs `body` on the entry of `key` under `policy`, made by `make` (given the key it is for)
    /// if new. When the policy is full in the key's shard, entries `isIdle` says may go are
    /// evicted first (one scan of the shard per `evictionScanInterval` at most, so a flood of new
    /// keys does not scan on every request). `overflowed` is true when the key was new and the
    /// policy still full, and the entry of `client`'s overflow key was used.
    func withEntry<Result>(policy: RateLimitPolicy, key: String, client: () -> String, now: UInt64, make: (String) -> Value,
                           isIdle: (Value) -> Bool,
                           _ body: (inout ShardEntries<Value>, String) -> Result) -> (result: Result, overflowed: Bool) {
        let fullKey = ShardEntries<Value>.fullKey(policy: policy.name, key: key)
        // Each shard holds its share of the bound; keys hash evenly over shards.
        let perShard = (policy.maxKeys + shards.count - 1) / shards.count
        let held: Result? = shard(for: fullKey).entries.withLock { entries in
            if entries[fullKey] == nil {
                if entries.keyCount(policy: policy.name) >= perShard, now &- entries.lastEvictionScan >= Self.evictionScanInterval {
                    entries.lastEvictionScan = now
                    entries.removeAll(where: isIdle)
                }
                guard entries.keyCount(policy: policy.name) < perShard else { return nil }
                entries[fullKey] = make(key)
            }
            return body(&entries, fullKey)
        }
        if let held { return (held, false) }
        let name = ShardEntries<Value>.overflowKeyName(group: Self.stableHash(client()) % Self.overflowGroups)
        let overflowKey = ShardEntries<Value>.fullKey(policy: policy.name, key: name)
        let result = shard(for: overflowKey).entries.withLock { entries in
            if entries[overflowKey] == nil { entries[overflowKey] = make(name) }
            return body(&entries, overflowKey)
        }
        return (result, true)
    }

    /// FNV-1a: the same group for a client on every node (their counters meet in Redis), unlike
    /// `hashValue`, which is seeded per process.
    static func stableHash(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return hash
    }
}

/// One lock-protected part of a sharded map (`Mutex` is non-copyable, so it cannot sit in an
/// array directly).
final class LockedShard<Value: Sendable>: Sendable {
    let entries = Mutex(ShardEntries<Value>())
}

/// A shard's entries by full key (`<policy>\0<key>`), with the number of keys each policy holds
/// here.
struct ShardEntries<Value: Sendable>: Sendable {
    private(set) var all: [String: Value] = [:]
    private var keysPerPolicy: [Substring: Int] = [:]
    /// When the local limiter next sweeps idle keys (see `LocalRateLimiter`).
    var sweepAt = 10_000
    /// When a full policy last had this shard scanned for idle keys (the limiter's clock).
    var lastEvictionScan: UInt64 = 0

    var count: Int { all.count }

    subscript(fullKey: String) -> Value? {
        get { all[fullKey] }
        set {
            // The policy's count changes only when a key comes or goes (not for an overflow key).
            if let newValue {
                if all.updateValue(newValue, forKey: fullKey) == nil, !Self.isOverflow(fullKey) {
                    keysPerPolicy[Self.policy(of: fullKey), default: 0] += 1
                }
            } else if all.removeValue(forKey: fullKey) != nil, !Self.isOverflow(fullKey) {
                let policy = Self.policy(of: fullKey)
                let left = (keysPerPolicy[policy] ?? 1) - 1
                keysPerPolicy[policy] = left > 0 ? left : nil
            }
        }
    }

    /// Keys `policy` holds in this shard (its overflow keys not included).
    func keyCount(policy: String) -> Int { keysPerPolicy[Substring(policy)] ?? 0 }

    mutating func removeAll(where shouldRemove: (Value) -> Bool) {
        for (fullKey, value) in all where shouldRemove(value) { self[fullKey] = nil }
    }

    static func fullKey(policy: String, key: String) -> String { policy + "\u{0}" + key }

    /// A key a policy's new keys count under once it holds `maxKeys` keys (`_overflow:GROUP`).
    /// The keys requests produce all have a `kind:` prefix (`RateLimitKey`), so none starts with `_`.
    static func overflowKeyName(group: UInt64) -> String { "_overflow:" + String(group) }

    private static func isOverflow(_ fullKey: String) -> Bool {
        guard let separator = fullKey.utf8.firstIndex(of: 0) else { return false }
        return fullKey.utf8[fullKey.utf8.index(after: separator)...].first == UInt8(ascii: "_")
    }

    private static func policy(of fullKey: String) -> Substring {
        fullKey[..<(fullKey.firstIndex(of: "\u{0}") ?? fullKey.endIndex)]
    }
}
