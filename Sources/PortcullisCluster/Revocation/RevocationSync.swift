import Foundation
import Logging
import Metrics
import PortcullisRedis
import Synchronization

/// Keeps a node's `RevocationSet` in step with Redis, without gaps:
///
/// 1. the pub/sub subscription is up before anything is read, so nothing published later is missed;
/// 2. `GET rev:seq` gives S0, then the snapshot (jti ZSET, cut-off and key hashes) is read;
/// 3. every logged change with sequence > S0 is re-applied in order (changes are per-key
///    last-writer-wins, so re-applying what the snapshot already has is harmless);
/// 4. live events then apply in sequence order; a gap fetches the missing range from the log,
///    and if the log no longer has it (pruned), a full resync runs.
///
/// A reconnect of the subscriber (messages may have been lost) and the periodic sequence check
/// catch up from the log the same way. Serialised by the actor; the set itself is read lock-free
/// by the request path.
actor RevocationSync {
    private let keys: ClusterKeys
    private let mac: ClusterMAC
    let set: RevocationSet
    private let client: RedisClient
    private let staleness: StalenessClock
    private let nodeID: String
    private let logger: Logger
    private let propagation: Timer
    private let appliedGauge: Gauge
    private let rejected: Counter
    private let snapshotPageSize = 50_000

    /// Highest sequence applied; -1 until the first sync.
    private(set) var applied: Int64 = -1
    /// The Redis history this node's state came from (see `ClusterKeys.revocationEpoch`).
    private var epoch: String?
    private let syncedFlag = Atomic<Bool>(false)
    private let appliedMirror = Atomic<Int64>(-1)

    init(keys: ClusterKeys, mac: ClusterMAC, set: RevocationSet, client: RedisClient, staleness: StalenessClock, nodeID: String, logger: Logger) {
        self.keys = keys
        self.mac = mac
        self.set = set
        self.client = client
        self.staleness = staleness
        self.nodeID = nodeID
        self.logger = logger
        propagation = Timer(label: "portcullis_revocation_propagation_seconds", preferredDisplayUnit: .seconds)
        appliedGauge = Gauge(label: "portcullis_revocation_applied_sequence")
        rejected = Counter(label: "portcullis_keyset_events_rejected_total", dimensions: [("kind", "revocation")])
    }

    /// True once a full sync completed (readiness).
    nonisolated var isSynced: Bool { syncedFlag.load(ordering: .relaxed) }
    nonisolated var appliedSequence: Int64 { appliedMirror.load(ordering: .relaxed) }

    // MARK: Full sync

    /// Loads the snapshot and everything logged after it. With `merge`, entries already held
    /// are kept (Redis lost data: never forget a revocation because Redis did).
    func resync(cause: String, merge: Bool = false) async throws {
        let started = ContinuousClock.now
        let head = try await client.pipeline([["GET", RedisArgument(keys.revocationSequence)], ["GET", RedisArgument(keys.revocationEpoch)]])
        let s0 = try head[0].get().int ?? 0
        epoch = try head[1].get().string
        let now = Int64(Date().timeIntervalSince1970)

        // Stream the snapshot straight into a new table: holding 1M parsed entries (or many
        // pipelined pages of replies) at once would double the node's peak memory.
        let total = Int(try await client.send("ZCARD", RedisArgument(keys.revokedJTIs)).int ?? 0)
        let table = RevokedTokenTable(expected: max(total, 1024))
        var loaded = 0
        var start = 0
        while start < total {
            let reply = try await client.send("ZRANGE", RedisArgument(keys.revokedJTIs), RedisArgument(start), RedisArgument(start + snapshotPageSize - 1), "WITHSCORES")
            let items = reply.array ?? []
            if items.isEmpty { break }
            var index = 0
            while index + 1 < items.count {
                if case .bulkString(let jti) = items[index], let expiry = items[index + 1].int ?? items[index + 1].string.flatMap(Double.init).map(Int64.init),
                   expiry + RevocationSet.expiryGrace > now {
                    if !table.insert(RevokedTokenTable.fingerprint(jti), expiresAt: expiry) { break }
                    loaded += 1
                }
                index += 2
            }
            start += snapshotPageSize
        }
        let subjects = try await hashOfCutoffs(keys.subjectCutoffs)
        let clients = try await hashOfCutoffs(keys.clientCutoffs)
        let revokedKeys = try await hashOfCutoffs(keys.revokedKeys)
        if merge {
            set.merge(tokens: table, subjects: subjects, clients: clients, keys: revokedKeys, now: now)
        } else {
            set.replaceAll(tokens: table, subjects: subjects, clients: clients, keys: revokedKeys)
        }
        setApplied(s0)
        try await catchUpFromLog(allowResync: false)
        syncedFlag.store(true, ordering: .relaxed)
        staleness.confirm()
        Counter(label: "portcullis_revocation_resyncs_total", dimensions: [("cause", cause)]).increment()
        logger.info("revocations synced", metadata: [
            "cause": "\(cause)", "sequence": "\(applied)", "tokens": "\(loaded)",
            "subjects": "\(subjects.count)", "clients": "\(clients.count)", "keys": "\(revokedKeys.count)",
            "duration_ms": "\((ContinuousClock.now - started).components.attoseconds / 1_000_000_000_000_000 + (ContinuousClock.now - started).components.seconds * 1000)",
        ])
        await acknowledge(sequence: applied, latencyMicros: nil)
    }

    private func hashOfCutoffs(_ key: String) async throws -> [String: Int64] {
        (try await client.send("HGETALL", RedisArgument(key)).array ?? []).hashFields().compactMapValues { Int64($0) }
    }

    // MARK: Incremental

    /// Applies logged changes after `applied`; falls back to a full resync when changes this
    /// node has not seen were trimmed from the log (expired jti entries leave harmless holes).
    func catchUpFromLog(allowResync: Bool = true) async throws {
        let replies = try await client.pipeline([
            ["GET", RedisArgument(keys.revocationTrimmed)],
            ["ZRANGEBYSCORE", RedisArgument(keys.revocationLog), RedisArgument("(\(applied)"), "+inf"],
        ])
        let trimmed = try replies[0].get().int ?? 0
        if allowResync, trimmed > applied {
            try await resync(cause: "log_trimmed")
            return
        }
        var events: [RevocationEvent] = []
        for entry in try replies[1].get().array ?? [] {
            guard let bytes = entry.bytes else { continue }
            do {
                events.append(try RevocationEvent.decode(bytes, mac: mac))
            } catch {
                rejected.increment()
                logger.error("ignoring a revocation log entry", metadata: ["error": "\(error)"])
            }
        }
        events.sort { $0.sequence < $1.sequence }
        let now = Int64(Date().timeIntervalSince1970)
        for event in events where event.sequence > applied {
            set.apply(event.revocation, now: now)
            setApplied(event.sequence)
        }
        staleness.confirm()
    }

    /// A live pub/sub message.
    func receive(_ bytes: [UInt8]) async {
        let event: RevocationEvent
        do {
            event = try RevocationEvent.decode(bytes, mac: mac)
        } catch {
            rejected.increment()
            logger.error("ignoring a revocation event", metadata: ["error": "\(error)"])
            return
        }
        guard applied >= 0 else { return }  // the first sync will pick it up from the log
        if event.sequence <= applied { return }
        if event.sequence > applied + 1 {
            do {
                try await catchUpFromLog()
            } catch {
                logger.warning("could not fetch missing revocations; will retry", metadata: ["error": "\(error)"])
                return
            }
            if event.sequence <= applied {
                recordPropagation(event)
                await acknowledge(sequence: event.sequence, latencyMicros: latencyMicros(event))
                return
            }
        }
        set.apply(event.revocation, now: Int64(Date().timeIntervalSince1970))
        setApplied(event.sequence)
        staleness.confirm()
        recordPropagation(event)
        await acknowledge(sequence: event.sequence, latencyMicros: latencyMicros(event))
    }

    /// The periodic check: is Redis's sequence ahead of ours, and is it still the same history?
    func check() async throws {
        let replies = try await client.pipeline([["GET", RedisArgument(keys.revocationSequence)], ["GET", RedisArgument(keys.revocationEpoch)]])
        let current = try replies[0].get().int ?? 0
        let currentEpoch = try replies[1].get().string
        if currentEpoch != epoch || current < applied {
            // Redis restarted without its data or was replaced. Keep every revocation we hold and
            // add what the new Redis has; an operator must restore persistence (see docs/operations.md).
            logger.error("Redis revocation history changed (data loss or a different Redis); merging, keeping local revocations",
                         metadata: ["redis_sequence": "\(current)", "applied": "\(applied)"])
            try await resync(cause: "history_changed", merge: true)
            return
        }
        if current > applied {
            try await catchUpFromLog()
        }
        staleness.confirm()
    }

    private func setApplied(_ sequence: Int64) {
        applied = sequence
        appliedMirror.store(sequence, ordering: .relaxed)
        appliedGauge.record(sequence)
    }

    private func latencyMicros(_ event: RevocationEvent) -> Int64 {
        max(0, Int64(Date().timeIntervalSince1970 * 1_000_000) - event.writtenAtMicros)
    }

    private func recordPropagation(_ event: RevocationEvent) {
        propagation.recordMicroseconds(latencyMicros(event))
    }

    /// Tells the control plane this node applied `sequence` (and how long it took, for live events).
    private func acknowledge(sequence: Int64, latencyMicros: Int64?) async {
        var commands: [[RedisArgument]] = [
            ["HSET", RedisArgument(keys.node(nodeID)), "applied_seq", RedisArgument(sequence), "applied_at_ms", RedisArgument(Int64(Date().timeIntervalSince1970 * 1000))],
        ]
        if let latencyMicros {
            let ackKey = keys.revocationAcks(sequence)
            commands.append(["HSET", RedisArgument(ackKey), RedisArgument(nodeID), RedisArgument(latencyMicros)])
            commands.append(["EXPIRE", RedisArgument(ackKey), "3600"])
        }
        commands.append(["PUBLISH", RedisArgument(keys.ackChannel), RedisArgument("\(nodeID) \(sequence) \(latencyMicros ?? -1)")])
        // The first command after Redis came back may meet the dead connection; one retry
        // reconnects. A still-failing acknowledgement is repaired by the next heartbeat.
        if (try? await client.pipeline(commands)) == nil {
            _ = try? await client.pipeline(commands)
        }
    }
}
