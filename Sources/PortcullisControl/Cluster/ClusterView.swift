import Foundation
import PortcullisCluster
import PortcullisJOSE
import PortcullisRedis
import Synchronization

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
    /// Gateways seen live lately: one whose record vanished without a signed "leaving" record is
    /// still expected (as not having applied anything) until three of its heartbeats passed, so
    /// deleting a node's record cannot make `wait` complete without it.
    private let seen = Seen()

    private final class Seen: Sendable {
        struct State {
            var records: [String: NodeRecord] = [:]
            /// Ids whose deletion was reported (until the record is back or forgotten).
            var reported: Set<String> = []
        }
        let state = Mutex(State())
    }

    init(client: RedisClient, keys: ClusterKeys, store: RevocationStore, membership: Membership, revocationList: RevocationFollower) {
        self.client = client
        self.keys = keys
        self.membership = membership
        self.store = store
        self.revocationList = revocationList
    }

    /// Live gateways: verified records, plus those seen lately whose record disappeared. A record
    /// gone while its TTL (three heartbeats from its signed heartbeat time) still ran was deleted,
    /// not expired: that is reported, once per disappearance. While the node set cannot be read
    /// whole (`Membership.Scan.complete`), no gateway seen before is forgotten: one missing from
    /// a partial read may be live and behind, and `wait` must not complete without it.
    private func expectedGateways() async throws -> (records: [NodeRecord], deleted: [String]) {
        let scan = try await membership.liveNodeScan(role: "gateway")
        let records = scan.nodes
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        return seen.state.withLock { state in
            var present = Set<String>()
            var current: [NodeRecord] = []
            for record in records {
                // A record older than one already seen is a replay: keep expecting the newer one.
                if let known = state.records[record.id], record.heartbeatAtMillis < known.heartbeatAtMillis { continue }
                if record.leaving, let known = state.records[record.id], known.instance != record.instance { continue }
                present.insert(record.id)
                current.append(record)
                state.records[record.id] = record.leaving ? nil : record
                state.reported.remove(record.id)
            }
            if scan.complete {
                state.records = state.records.filter { now - $0.value.heartbeatAtMillis <= $0.value.heartbeatIntervalMillis * 3 + 2000 }
            }
            state.reported.formIntersection(state.records.keys)
            var deleted: [String] = []
            var expected = current.filter { !$0.leaving }
            for (id, record) in state.records where !present.contains(id) {
                var missing = record
                missing.ack = nil
                expected.append(missing)
                // Half a heartbeat short of the TTL: clocks of node and control plane may differ a
                // little. (A partial read proves no deletion: the record may be among the unread.)
                if scan.complete, now - record.heartbeatAtMillis < record.heartbeatIntervalMillis * 5 / 2, state.reported.insert(id).inserted {
                    deleted.append(id)
                }
            }
            return (expected.sorted { $0.id < $1.id }, deleted.sorted())
        }
    }

    /// The signed head's sequence, the head itself, and every live gateway with its lag.
    func gateways() async throws -> (sequence: Int64, head: RevocationHead?, nodes: [NodeView]) {
        let head = try await store.head()
        let sequence = head?.sequence ?? 0
        let (records, deleted) = try await expectedGateways()
        for id in deleted {
            store.reportTampering(key: keys.node(id), "the record of gateway '\(id)' vanished before its TTL ran out, without the node leaving")
        }
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
        return (sequence, head, views)
    }

    /// Live control-plane nodes (this one included).
    func controlPlanes() async throws -> [NodeRecord] {
        try await membership.liveNodes(role: "control")
    }

    /// Entries in force per kind, from the control plane's copy of the list.
    func revocationCounts() -> [String: Int64] {
        let counts = revocationList.set.counts
        return ["jti": Int64(counts.tokens), "subject": Int64(counts.subjects), "client": Int64(counts.clients), "grant": Int64(counts.grants),
                "key": Int64(counts.keys), "session": Int64(counts.sessions)]
    }
}
