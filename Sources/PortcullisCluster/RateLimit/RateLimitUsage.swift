import PortcullisRedis

/// Reads the gateways' shared rate-limit window counters (`rl:<policy>:<window>:<key>`, written by
/// `ClusterRateLimiter`) for the control plane's view of who uses how much.
public struct RateLimitUsage: Sendable {
    /// One fixed-window counter.
    public struct Counter: Sendable, Equatable {
        public var policy: String
        /// The window's index (`now / window length`).
        public var window: UInt64
        /// The limited key as the gateways count it (`client:<id>`, `sub:<subject>`, …).
        public var key: String
        let redisKey: String
    }

    let client: RedisClient
    let keys: ClusterKeys

    public init(client: RedisClient, keys: ClusterKeys) {
        self.client = client
        self.keys = keys
    }

    /// The counters present now (SCAN, at most `limit` keys).
    public func counters(limit: Int = 50_000) async throws -> [Counter] {
        let prefix = keys.prefix + "rl:"
        var names: [String] = []
        var cursor = "0"
        repeat {
            let reply = try await client.send("SCAN", RedisArgument(cursor), "MATCH", RedisArgument(prefix + "*"), "COUNT", "1000").array ?? []
            guard reply.count == 2 else { break }
            cursor = reply[0].string ?? "0"
            names += (reply[1].array ?? []).compactMap(\.string)
        } while cursor != "0" && names.count < limit
        return names.compactMap { name in
            let parts = name.dropFirst(prefix.count).split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, let window = UInt64(parts[1]) else { return nil }
            return Counter(policy: String(parts[0]), window: window, key: String(parts[2]), redisKey: name)
        }
    }

    /// The value of each counter (0 when gone), in order.
    public func values(_ counters: [Counter]) async throws -> [Int64] {
        guard !counters.isEmpty else { return [] }
        let reply = try await client.send(["MGET"] + counters.map { RedisArgument($0.redisKey) }).array ?? []
        return counters.indices.map { reply.indices.contains($0) ? reply[$0].int ?? reply[$0].string.flatMap { Int64($0) } ?? 0 : 0 }
    }
}
