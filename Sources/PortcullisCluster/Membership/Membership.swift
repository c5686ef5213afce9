import Foundation
import PortcullisRedis

/// Reads and writes node records, signing what it writes and checking what it reads.
public struct Membership: Sendable {
    let client: RedisClient
    let keys: ClusterKeys
    let mac: ClusterMAC
    let alarm: TamperingAlarm

    public init(client: RedisClient, keys: ClusterKeys, mac: ClusterMAC, alarm: TamperingAlarm) {
        self.client = client
        self.keys = keys
        self.mac = mac
        self.alarm = alarm
    }

    /// Writes a heartbeat: the signed record, its TTL (3 × interval) and the id in the node set.
    ///
    /// A key of another type where the record or the node set belongs (a Redis writer's `SADD` on
    /// `node:<id>` once the record expired) fails every write to it with WRONGTYPE: such a key is
    /// reported, deleted and the heartbeat written again, so that the node is not hidden — and the
    /// control plane's head beat not stopped — for as long as the key stays (found by an attacker
    /// review).
    public func heartbeat(_ record: NodeRecord, interval: Duration) async throws {
        let ttlMillis = max(300, Int(interval.wholeMilliseconds) * 3)
        let commands: [[RedisArgument]] = [
            ["HSET", RedisArgument(keys.node(record.id))] + record.fields(mac: mac),
            ["PEXPIRE", RedisArgument(keys.node(record.id)), RedisArgument(ttlMillis)],
            ["SADD", RedisArgument(keys.nodes), RedisArgument(record.id)],
        ]
        let replies = try await client.pipeline(commands)
        var misplaced: [String] = []
        for (index, reply) in replies.enumerated() {
            guard case .failure(let error) = reply, error.errorCode == "WRONGTYPE" else { continue }
            let key = index == 2 ? keys.nodes : keys.node(record.id)
            if !misplaced.contains(key) { misplaced.append(key) }
        }
        guard !misplaced.isEmpty else {
            for reply in replies { _ = try reply.get() }
            return
        }
        for key in misplaced { alarm.report(key: key, "a key of another type where the membership record belongs: replaced") }
        for reply in try await client.pipeline(misplaced.map { ["DEL", RedisArgument($0)] } + commands) { _ = try reply.get() }
    }

    /// Removes a record outright (the control plane's own, which nothing counts on).
    public func remove(id: String) async {
        _ = try? await client.pipeline([["DEL", RedisArgument(keys.node(id))], ["SREM", RedisArgument(keys.nodes), RedisArgument(id)]])
    }

    /// At shutdown: replaces the record by a signed "leaving" one, so readers drop the node at
    /// once (a record deleted by someone else is still expected for three heartbeats).
    public func leave(_ record: NodeRecord, interval: Duration) async {
        var leaving = record
        leaving.leaving = true
        leaving.heartbeatAtMillis = Int64(Date().timeIntervalSince1970 * 1000)
        _ = try? await heartbeat(leaving, interval: interval)
    }

    /// The most ids one `liveNodes` call reads from the node set, `scanBatch` at a time.
    ///
    /// The set is written by every gateway's credential, so it may hold ids no node wrote: one
    /// `SADD` of 300 000 ids, read whole (SMEMBERS, then a record lookup for each in one
    /// pipeline), held every node's shared Redis connection past its command timeout at every
    /// heartbeat — requests that never touch Redis stalled for seconds, rate limits fell back,
    /// and the ids were never pruned because the read never finished (an attacker review). Read
    /// in bounded batches, each batch's dead ids pruned as it is read, a set of any size costs a
    /// heartbeat at most `maxScanned` lookups and shrinks by as many dead ids each time.
    public static let maxScanned = 10_000
    static let scanBatch = 1_000

    /// Live nodes, sorted by id: records that verify and whose signed heartbeat is recent (those
    /// marked `leaving` included: callers tell them apart). Records are read through
    /// `BoundedHashRead.nodeRecord`. Ids without a record are pruned from the set; records that
    /// do not verify (or are too large to be one) are reported as tampering, left out and their
    /// ids pruned too (a live node writes its id back at its next heartbeat). At most
    /// `maxScanned` ids are read per call: while the set holds more (only a Redis writer's ids
    /// can make it so, adding them faster than they are pruned), live nodes beyond them are
    /// missed, and the set is reported as tampering: see `liveNodeScan` to know.
    public func liveNodes(role: String? = "gateway") async throws -> [NodeRecord] {
        try await liveNodeScan(role: role).nodes
    }

    /// What one read of the node set found.
    public struct Scan: Sendable {
        /// Live nodes, sorted by id.
        public var nodes: [NodeRecord]
        /// False when the set held more than `maxScanned` ids: live nodes may be missing, and
        /// callers keep counting the nodes they knew of rather than take their absence as
        /// leaving (a Redis writer adding ids faster than nodes prune them hid live nodes, which
        /// widened every other node's share of a cluster rate limit: a bypass review).
        public var complete: Bool
    }

    /// `liveNodes`, and whether the whole set was read.
    public func liveNodeScan(role: String? = "gateway") async throws -> Scan {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        var live: [String: NodeRecord] = [:]
        var seen = Set<String>()
        var cursor = "0"
        repeat {
            let reply = try await client.send("SSCAN", RedisArgument(keys.nodes), RedisArgument(cursor), "COUNT", RedisArgument(Self.scanBatch))
            guard let parts = reply.array, parts.count == 2, let next = parts[0].string else { break }
            cursor = next
            // SSCAN may return an id twice, and more than COUNT at once.
            let ids = (parts[1].array ?? []).compactMap(\.string).filter { seen.insert($0).inserted }
            guard !ids.isEmpty else { continue }
            let records = try await BoundedHashRead.nodeRecord.read(client, keys: ids.map { keys.node($0) })
            // Ids without a record, or with one that does not verify, leave the set: a node that
            // lives writes its id back at its next heartbeat.
            var dead: [RedisArgument] = []
            for (id, outcome) in zip(ids, records) {
                switch outcome {
                case .refused(let why):
                    alarm.report(key: keys.node(id), "ignoring a node record: \(why)")
                    dead.append(RedisArgument(id))
                case .hash(let hash) where hash.isEmpty:
                    dead.append(RedisArgument(id))
                case .hash(let hash):
                    do {
                        let record = try NodeRecord(hash: hash, id: id, mac: mac, nowMillis: now)
                        if let rejection = record.ackRejection { alarm.report(key: keys.node(id), rejection) }
                        if role == nil || record.role == role { live[id] = record }
                    } catch {
                        alarm.report(key: keys.node(id), "\(error)")
                        dead.append(RedisArgument(id))
                    }
                }
            }
            if !dead.isEmpty {
                _ = try? await client.send(["SREM", RedisArgument(keys.nodes)] + dead)
            }
        } while cursor != "0" && seen.count < Self.maxScanned
        if cursor != "0" {
            alarm.report(key: keys.nodes, "the node set holds more ids than a heartbeat reads (\(Self.maxScanned)); dead ones are pruned as they are read")
        }
        return Scan(nodes: live.keys.sorted().compactMap { live[$0] }, complete: cursor == "0")
    }
}
