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

    /// Writes a heartbeat: the signed record, its TTL (3 × interval) and the id in the node set,
    /// in one script.
    ///
    /// The record is replaced whole: fields a Redis writer added to a live node's record (junk
    /// fields, with no more than a gateway's credential) would make every reader refuse it as too
    /// large, and — written field by field — it would stay so for as long as the node lived,
    /// missing from `?wait`, rotations and the node list. A key of another type where the record
    /// or the node set belongs (a Redis writer's `SADD` on `node:<id>` once the record expired)
    /// would fail every write to it with WRONGTYPE, hiding the node and stopping the control
    /// plane's head beat: such a key is reported and
    /// replaced.
    public func heartbeat(_ record: NodeRecord, interval: Duration) async throws {
        let ttlMillis = max(300, Int(interval.wholeMilliseconds) * 3)
        let misplaced = try await client.evalScript(Self.heartbeatScript, keys: [RedisArgument(keys.node(record.id)), RedisArgument(keys.nodes)],
                                                    arguments: [RedisArgument(ttlMillis), RedisArgument(record.id)] + record.fields(mac: mac)).int ?? 0
        if misplaced & 1 != 0 { alarm.report(key: keys.node(record.id), "a key of another type where the membership record belongs: replaced") }
        if misplaced & 2 != 0 { alarm.report(key: keys.nodes, "a key of another type where the membership record belongs: replaced") }
    }

    /// KEYS: the node's record, the node set. ARGV: TTL ms, the node's id, then the record's
    /// fields and values. Returns 1 when the record's key held another type, plus 2 when the
    /// node set's did (each replaced). Only commands a gateway's ACL user may run (`HLEN` tells a
    /// hash, or nothing, from another type: `TYPE` is not among them).
    static let heartbeatScript = RedisScript("""
    local function wrongtype(reply) return type(reply) == 'table' and reply.err and string.find(reply.err, 'WRONGTYPE', 1, true) end
    local misplaced = 0
    if wrongtype(redis.pcall('HLEN', KEYS[1])) then misplaced = 1 end
    redis.call('DEL', KEYS[1])
    redis.call('HSET', KEYS[1], unpack(ARGV, 3))
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    local added = redis.pcall('SADD', KEYS[2], ARGV[2])
    if wrongtype(added) then
      redis.call('DEL', KEYS[2])
      redis.call('SADD', KEYS[2], ARGV[2])
      misplaced = misplaced + 2
    elseif type(added) == 'table' and added.err then
      return redis.error_reply(added.err)
    end
    return misplaced
    """)

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
    /// `SADD` of enough ids, read whole (SMEMBERS, then a record lookup for each in one
    /// pipeline), would hold every node's shared Redis connection past its command timeout at
    /// every heartbeat — requests that never touch Redis would stall, rate limits fall back, and
    /// the ids would never be pruned because the read would never finish. Read in bounded
    /// batches, each batch's dead ids pruned as it is read, a set of any size costs a heartbeat
    /// at most `maxScanned` lookups and shrinks by as many dead ids each time.
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
        /// leaving (a Redis writer adding ids faster than nodes prune them would hide live nodes,
        /// widening every other node's share of a cluster rate limit).
        public var complete: Bool
    }

    /// KEYS: the node set. ARGV: cursor, COUNT, the longest node id. One `SSCAN` step, with ids
    /// longer than a node id removed in Redis instead of returned: `{next cursor, ids, removed}`.
    /// Read as they are, huge ids a gateway's credential added would cost every node that much
    /// memory at every heartbeat and time its Redis connection out.
    static let scanScript = RedisScript("""
    local reply = redis.call('SSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
    local longest = tonumber(ARGV[3])
    local ids, long = {}, {}
    for _, id in ipairs(reply[2]) do
      if #id <= longest then ids[#ids + 1] = id else long[#long + 1] = id end
    end
    if #long > 0 then redis.call('SREM', KEYS[1], unpack(long)) end
    return {reply[1], ids, #long}
    """)

    /// `liveNodes`, and whether the whole set was read.
    public func liveNodeScan(role: String? = "gateway") async throws -> Scan {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        var live: [String: NodeRecord] = [:]
        var seen = Set<String>()
        var cursor = "0"
        repeat {
            let reply = try await client.evalScript(Self.scanScript, keys: [RedisArgument(keys.nodes)],
                                                    arguments: [RedisArgument(cursor), RedisArgument(Self.scanBatch), RedisArgument(NodeID.maxBytes)])
            guard let parts = reply.array, parts.count == 3, let next = parts[0].string else { break }
            cursor = next
            if let removed = parts[2].int, removed > 0 {
                alarm.report(key: keys.nodes, "\(removed) ids longer than any node id (\(NodeID.maxBytes) bytes) in the node set: removed unread")
            }
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
