import Foundation
import PortcullisCluster
import PortcullisJOSE
import PortcullisRedis

/// A live gateway node as the admin API shows it: its verified record plus how far behind the
/// cluster's revocation head it is.
struct NodeView: Sendable {
    var record: NodeRecord
    /// The sequence the node's signed acknowledgement confirms in the current epoch; -1 when it
    /// confirmed nothing in it (not synced yet, or following another history).
    var appliedSequence: Int64
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
            "applied_sequence": .integer(appliedSequence),
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

/// Reads the cluster's state for the admin API and metrics, through the cluster module's
/// verified readers (node records, the signed head and log) and the control plane's own copy of
/// the revocation list.
struct ClusterView: Sendable {
    let client: RedisClient
    let keys: ClusterKeys
    let membership: Membership
    let store: RevocationStore
    let revocationList: RevocationFollower

    init(client: RedisClient, keys: ClusterKeys, store: RevocationStore, membership: Membership, revocationList: RevocationFollower) {
        self.client = client
        self.keys = keys
        self.membership = membership
        self.store = store
        self.revocationList = revocationList
    }

    /// The signed head's sequence and epoch, and every live gateway with its lag.
    func gateways() async throws -> (sequence: Int64, epoch: RevocationEpoch?, nodes: [NodeView]) {
        let head = try await store.head()
        let sequence = head?.sequence ?? 0
        let records = try await membership.liveNodes(role: "gateway")
        func applied(_ record: NodeRecord) -> Int64 {
            guard let ack = record.ack, let head, ack.epoch == head.epoch else { return -1 }
            return ack.sequence
        }
        var oldestUnapplied: [Int64: Int64] = [:]  // applied sequence → write time (µs) of the next change
        for behind in Set(records.map(applied).filter { $0 < sequence }) {
            if let next = try await store.nextEntry(after: max(behind, 0)) { oldestUnapplied[behind] = next.writtenAtMicros }
        }
        let nowMicros = Int64(Date().timeIntervalSince1970 * 1_000_000)
        let views = records.map { record -> NodeView in
            let appliedSequence = applied(record)
            let lag = max(0, sequence - max(appliedSequence, 0))
            let seconds: Double? = lag == 0 ? 0 : oldestUnapplied[appliedSequence].map { max(0, Double(nowMicros - $0) / 1e6) }
            return NodeView(record: record, appliedSequence: appliedSequence, lagSequences: lag, lagSeconds: seconds)
        }
        return (sequence, head?.epoch, views)
    }

    /// Live control-plane nodes (this one included).
    func controlPlanes() async throws -> [NodeRecord] {
        try await membership.liveNodes(role: "control")
    }

    /// Entries in force per kind, from the control plane's copy of the list.
    func revocationCounts() -> [String: Int64] {
        let counts = revocationList.set.counts
        return ["jti": Int64(counts.tokens), "subject": Int64(counts.subjects), "client": Int64(counts.clients), "key": Int64(counts.keys)]
    }
}
