import Foundation
import PortcullisCluster
import PortcullisJOSE
import PortcullisRedis

/// A live gateway node as the admin API shows it: its record plus how far behind the cluster's
/// revocation sequence it is.
struct NodeView: Sendable {
    var record: NodeRecord
    /// Changes not applied yet.
    var lagSequences: Int64
    /// Age of the oldest change not applied yet; 0 when in step, nil when unknown (pruned).
    var lagSeconds: Double?

    func json(nowMillis: Int64) -> JSONValue {
        var keysets: [String: JSONValue] = [:]
        for (issuer, version) in record.keySetVersions { keysets[issuer] = .string(version) }
        return [
            "id": .string(record.id),
            "role": .string(record.role),
            "address": .string(record.address),
            "admin_address": .string(record.adminAddress),
            "version": .string(record.version),
            "started_at_ms": .integer(record.startedAtMillis),
            "uptime_seconds": .number(max(0, Double(nowMillis - record.startedAtMillis) / 1000)),
            "heartbeat_age_seconds": .number(max(0, Double(nowMillis - record.heartbeatAtMillis) / 1000)),
            "applied_sequence": .integer(record.appliedSequence),
            "revocation_lag": [
                "sequences": .integer(lagSequences),
                "seconds": lagSeconds.map { .number($0) } ?? .null,
            ],
            "revocation_staleness_seconds": .number(record.revocationStalenessSeconds),
            "keysets": .object(keysets),
            "ratelimit_mode": .string(record.rateLimitMode),
            "redis_connected": .bool(record.redisConnected),
        ]
    }
}

/// Reads the cluster's state from Redis for the admin API and metrics.
struct ClusterView: Sendable {
    let client: RedisClient
    let keys: ClusterKeys
    let membership: Membership
    let store: RevocationStore

    init(client: RedisClient, keys: ClusterKeys, store: RevocationStore) {
        self.client = client
        self.keys = keys
        self.membership = Membership(client: client, keys: keys)
        self.store = store
    }

    /// The current revocation sequence and every live gateway with its lag.
    func gateways() async throws -> (sequence: Int64, nodes: [NodeView]) {
        let sequence = try await store.currentSequence()
        let records = try await membership.liveNodes(role: "gateway")
        let behind = Set(records.map(\.appliedSequence).filter { $0 < sequence })
        var oldestUnapplied: [Int64: Int64] = [:]  // applied sequence → write time (µs) of the next change
        if !behind.isEmpty {
            let ordered = behind.sorted()
            let replies = try await client.pipeline(ordered.map {
                ["ZRANGEBYSCORE", RedisArgument(keys.revocationLog), RedisArgument("(\(max($0, 0))"), "+inf", "LIMIT", "0", "1"]
            })
            for (applied, reply) in zip(ordered, replies) {
                guard let entry = (try? reply.get())?.array?.first?.string else { continue }
                let parts = entry.split(separator: " ", maxSplits: 2)
                if parts.count >= 2, let written = Int64(parts[1]) { oldestUnapplied[applied] = written }
            }
        }
        let nowMicros = Int64(Date().timeIntervalSince1970 * 1_000_000)
        let views = records.map { record -> NodeView in
            let lag = max(0, sequence - max(record.appliedSequence, 0))
            let seconds: Double? = lag == 0 ? 0 : oldestUnapplied[record.appliedSequence].map { max(0, Double(nowMicros - $0) / 1e6) }
            return NodeView(record: record, lagSequences: record.appliedSequence < 0 ? sequence : lag, lagSeconds: seconds)
        }
        return (sequence, views)
    }

    /// Live control-plane nodes (this one included).
    func controlPlanes() async throws -> [NodeRecord] {
        try await membership.liveNodes(role: "control")
    }

    /// Entries in force per kind, from the snapshot structures.
    func revocationCounts() async throws -> [String: Int64] {
        let replies = try await client.pipeline([
            ["ZCARD", RedisArgument(keys.revokedJTIs)], ["HLEN", RedisArgument(keys.subjectCutoffs)],
            ["HLEN", RedisArgument(keys.clientCutoffs)], ["HLEN", RedisArgument(keys.revokedKeys)],
        ])
        let values = try replies.map { try $0.get().int ?? 0 }
        return ["jti": values[0], "subject": values[1], "client": values[2], "key": values[3]]
    }
}
