import Foundation
import PortcullisRedis

/// What a gateway node says about itself in Redis (HASH `node:<id>`), refreshed every heartbeat
/// and expiring after three, so a dead node disappears on its own.
public struct NodeRecord: Sendable, Equatable {
    public var id: String
    public var role: String
    public var address: String
    public var adminAddress: String
    public var version: String
    /// Unix milliseconds.
    public var startedAtMillis: Int64
    public var heartbeatAtMillis: Int64
    public var appliedSequence: Int64
    public var appliedAtMillis: Int64?
    /// `issuer=version` pairs of the key sets in use.
    public var keySetVersions: [String: String]
    /// cluster, fallback or local.
    public var rateLimitMode: String
    public var redisConnected: Bool
    public var revocationStalenessSeconds: Double

    public init(id: String, role: String, address: String, adminAddress: String, version: String, startedAtMillis: Int64,
                heartbeatAtMillis: Int64, appliedSequence: Int64, appliedAtMillis: Int64?, keySetVersions: [String: String],
                rateLimitMode: String, redisConnected: Bool, revocationStalenessSeconds: Double) {
        self.id = id
        self.role = role
        self.address = address
        self.adminAddress = adminAddress
        self.version = version
        self.startedAtMillis = startedAtMillis
        self.heartbeatAtMillis = heartbeatAtMillis
        self.appliedSequence = appliedSequence
        self.appliedAtMillis = appliedAtMillis
        self.keySetVersions = keySetVersions
        self.rateLimitMode = rateLimitMode
        self.redisConnected = redisConnected
        self.revocationStalenessSeconds = revocationStalenessSeconds
    }

    /// Field/value arguments for HSET. The revocation sync also writes `applied_seq` right after
    /// applying a change; the heartbeat repeats it so an acknowledgement lost to a reconnect is
    /// repaired within one heartbeat.
    var fields: [RedisArgument] {
        [
            "id", RedisArgument(id), "role", RedisArgument(role), "address", RedisArgument(address),
            "admin_address", RedisArgument(adminAddress), "version", RedisArgument(version),
            "started_ms", RedisArgument(startedAtMillis), "heartbeat_ms", RedisArgument(heartbeatAtMillis),
            "keysets", RedisArgument(keySetVersions.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")),
            "ratelimit_mode", RedisArgument(rateLimitMode), "redis_connected", RedisArgument(redisConnected ? "1" : "0"),
            "staleness_s", RedisArgument(String(format: "%.3f", revocationStalenessSeconds)),
            "applied_seq", RedisArgument(appliedSequence),
        ]
    }

    init?(hash: [RedisValue]) {
        let map = hash.hashFields()
        guard let id = map["id"] else { return nil }
        self.id = id
        role = map["role"] ?? "gateway"
        address = map["address"] ?? ""
        adminAddress = map["admin_address"] ?? ""
        version = map["version"] ?? ""
        startedAtMillis = Int64(map["started_ms"] ?? "") ?? 0
        heartbeatAtMillis = Int64(map["heartbeat_ms"] ?? "") ?? 0
        appliedSequence = Int64(map["applied_seq"] ?? "") ?? -1
        appliedAtMillis = Int64(map["applied_at_ms"] ?? "")
        var versions: [String: String] = [:]
        for pair in (map["keysets"] ?? "").split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { versions[String(parts[0])] = String(parts[1]) }
        }
        keySetVersions = versions
        rateLimitMode = map["ratelimit_mode"] ?? "unknown"
        redisConnected = map["redis_connected"] == "1"
        revocationStalenessSeconds = Double(map["staleness_s"] ?? "") ?? 0
    }
}

/// Reads and writes node records.
public struct Membership: Sendable {
    let client: RedisClient
    let keys: ClusterKeys

    public init(client: RedisClient, keys: ClusterKeys) {
        self.client = client
        self.keys = keys
    }

    /// Writes a heartbeat: the record, its TTL (3 × interval) and the id in the node set.
    public func heartbeat(_ record: NodeRecord, interval: Duration) async throws {
        let ttlMillis = max(300, Int(interval.components.seconds * 1000 + interval.components.attoseconds / 1_000_000_000_000_000) * 3)
        _ = try await client.pipeline([
            ["HSET", RedisArgument(keys.node(record.id))] + record.fields,
            ["PEXPIRE", RedisArgument(keys.node(record.id)), RedisArgument(ttlMillis)],
            ["SADD", RedisArgument(keys.nodes), RedisArgument(record.id)],
        ])
    }

    /// Removes the record at shutdown so the node leaves at once.
    public func leave(id: String) async {
        _ = try? await client.pipeline([["DEL", RedisArgument(keys.node(id))], ["SREM", RedisArgument(keys.nodes), RedisArgument(id)]])
    }

    /// Live nodes (those whose record has not expired), sorted by id; expired ids are pruned.
    public func liveNodes(role: String? = "gateway") async throws -> [NodeRecord] {
        let ids = (try await client.send("SMEMBERS", RedisArgument(keys.nodes)).array ?? []).compactMap(\.string).sorted()
        guard !ids.isEmpty else { return [] }
        let replies = try await client.pipeline(ids.map { ["HGETALL", RedisArgument(keys.node($0))] })
        var live: [NodeRecord] = []
        var dead: [RedisArgument] = []
        for (id, reply) in zip(ids, replies) {
            if let hash = try? reply.get().array, !hash.isEmpty, let record = NodeRecord(hash: hash) {
                if role == nil || record.role == role { live.append(record) }
            } else {
                dead.append(RedisArgument(id))
            }
        }
        if !dead.isEmpty {
            _ = try? await client.send(["SREM", RedisArgument(keys.nodes)] + dead)
        }
        return live
    }
}
