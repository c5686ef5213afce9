import Foundation
import Logging
import Metrics
import PortcullisRedis
import Synchronization

/// Keeps a node's `RevocationSet` in step with the signed revocation log in Redis, trusting
/// nothing in Redis that does not carry the cluster secret's MAC:
///
/// 1. the pub/sub subscription is up before anything is read, so nothing published later is missed;
/// 2. a sync reads the signed head, then every log entry, and merges each signed, well-placed
///    entry into the set (the set only grows; see `RevocationSet`);
/// 3. live events apply in sequence order; a gap fetches the missing range from the log;
/// 4. the periodic check reads the head: a new beat that this node has caught up to confirms its
///    state as fresh (`max_staleness`); a head that does not verify, went back, or is ahead of
///    entries missing from the log confirms nothing and is reported as tampering.
///
/// `applied` only moves over entries that are present and verify, except below the head's floor,
/// where the control plane pruned expired ones. A new epoch (Redis lost its data) is merged into.
/// Serialised by the actor; the set itself is read lock-free by the request path.
actor RevocationSync {
    private let keys: ClusterKeys
    private let mac: ClusterMAC
    let set: RevocationSet
    private let reader: RevocationLogReader
    private let client: RedisClient
    private let staleness: StalenessClock
    /// nil on the control plane, which follows the log but acknowledges nothing.
    private let node: (id: String, instance: String)?
    private let logger: Logger
    private let propagation: Timer?
    private let acknowledgements: AcknowledgementWriter?
    /// Gateways only: the control plane's follower exports no node metrics.
    private let appliedGauge: Gauge?

    /// Highest sequence applied in `epoch`; -1 until the first sync.
    private(set) var applied: Int64 = -1
    /// The history `applied` counts in; nil until Redis has one.
    private(set) var epoch: RevocationEpoch?
    /// The head's floor last seen.
    private var floor: Int64 = 0
    /// The MAC of the change applied at `applied`: compared with the head's `last`, it tells
    /// whether that is the change committed there, and acknowledgements carry it.
    private var lastMAC = ""
    /// The MAC applied at each recent sequence (the last 4 096), to compare with a head the node
    /// has already moved past.
    private var recentMACs: [Int64: String] = [:]
    /// The newest head beat this node confirmed its state with.
    private var confirmedBeat: Int64 = -1
    private let syncedFlag = Atomic<Bool>(false)
    private let appliedMirror = Atomic<Int64>(-1)
    private let latestAck = Mutex<NodeAck?>(nil)
    private let positionMirror = Mutex<(epoch: RevocationEpoch?, sequence: Int64)>((nil, -1))

    init(keys: ClusterKeys, mac: ClusterMAC, set: RevocationSet, client: RedisClient, staleness: StalenessClock, node: (id: String, instance: String)?,
         alarm: TamperingAlarm, logger: Logger) {
        self.keys = keys
        self.mac = mac
        self.set = set
        self.client = client
        self.staleness = staleness
        self.node = node
        self.logger = logger
        // The control plane's copy (no node) may write the log: it removes what no change can be.
        reader = RevocationLogReader(client: client, keys: keys, mac: mac, alarm: alarm, removesOversized: node == nil)
        // Only a node measures it; the control plane's copy has its own cluster-wide histogram.
        propagation = node == nil ? nil : Timer(label: "portcullis_revocation_propagation_seconds", preferredDisplayUnit: .seconds)
        appliedGauge = node == nil ? nil : Gauge(label: "portcullis_revocation_applied_sequence")
        acknowledgements = node == nil ? nil : AcknowledgementWriter(client: client)
    }

    /// Revocations per page of a full sync: a page's parsed entries are all a sync holds at once.
    static let pageTokens = 10_000

    /// True once a full sync completed (readiness).
    nonisolated var isSynced: Bool { syncedFlag.load(ordering: .relaxed) }
    nonisolated var appliedSequence: Int64 { appliedMirror.load(ordering: .relaxed) }
    /// This node's latest signed acknowledgement (the heartbeat repeats it in the node record).
    nonisolated var acknowledgement: NodeAck? { latestAck.withLock { $0 } }
    /// The history this copy follows and how far it applied it.
    nonisolated var position: (epoch: RevocationEpoch?, sequence: Int64) { positionMirror.withLock { $0 } }

    // MARK: Full sync

    /// Reads the head and the whole log and merges every signed entry into the set.
    func resync(cause: String) async throws {
        let started = ContinuousClock.now
        let head: RevocationHead
        switch try await reader.head() {
        case .missing:
            if applied < 0 {
                // A cluster with no revocation history yet: nothing to hold, ready at once.
                setApplied(0)
                syncedFlag.store(true, ordering: .relaxed)
                staleness.confirm()
                logger.info("revocations synced", metadata: ["cause": "\(cause)", "sequence": "0", "note": "no revocation history in Redis yet"])
            } else {
                logger.warning("the revocation head is missing from Redis (data loss, or deleted); keeping every revocation held")
            }
            return
        case .invalid:
            if applied < 0 { throw ClusterError.invalid("the revocation head in Redis does not verify; not ready until a valid head appears") }
            return
        case .valid(let valid, _):
            head = valid
        }
        if let epoch, epoch.isNewer(than: head.epoch) {
            reader.alarm.report(key: keys.revocationHead, "the head went back to an older epoch (\(head.epoch), this node follows \(epoch))")
            return
        }
        if epoch != head.epoch {
            if epoch != nil {
                logger.error("Redis revocation history changed (data loss, or a different Redis); merging into it, keeping every revocation held",
                             metadata: ["epoch": "\(head.epoch)"])
            }
            epoch = head.epoch
            lastMAC = ""
            recentMACs = [:]
            setApplied(0)
            confirmedBeat = -1
        }
        floor = head.floor
        guard let loaded = try await loadLog(head) else { return }
        syncedFlag.store(true, ordering: .relaxed)
        confirm(head)
        Counter(label: "portcullis_revocation_resyncs_total", dimensions: [("cause", cause)]).increment()
        let counts = set.counts
        logger.info("revocations synced", metadata: [
            "cause": "\(cause)", "sequence": "\(applied)", "entries": "\(loaded)", "tokens": "\(counts.tokens)",
            "subjects": "\(counts.subjects)", "clients": "\(counts.clients)", "grants": "\(counts.grants)", "keys": "\(counts.keys)",
            "sessions": "\(counts.sessions)",
            "duration_ms": "\((ContinuousClock.now - started).wholeMilliseconds)",
        ])
        await acknowledge(latencyMicros: nil)
    }

    /// Reads the whole log page by page, merging every signed entry of `head`'s epoch into the set;
    /// `applied` follows the pages (which come in sequence order) up to the first hole above the
    /// floor. nil when another sync moved to another history meanwhile.
    private func loadLog(_ head: RevocationHead) async throws -> Int? {
        var reached = applied
        var mac = lastMAC
        var loaded = 0
        var start = 0
        var pageSize = 100
        while true {
            let (events, nextPage) = try await reader.page(start: start, count: pageSize, epoch: head.epoch)
            guard epoch == head.epoch else { return nil }
            set.applyAll(events.lazy.map(\.revocation), now: Int64(Date().timeIntervalSince1970))
            let next = contiguousEnd(events, from: reached)
            mac = macAt(next, events, head: head) ?? mac
            reached = next
            loaded += events.count
            guard let nextPage else { break }
            start = nextPage
            // About `pageTokens` revocations per page, whether the entries are batches or single.
            let tokens = max(1, events.reduce(0) { $0 + $1.revocation.count })
            pageSize = min(2_000, max(2, pageSize * Self.pageTokens / tokens))
        }
        if reached >= applied {
            lastMAC = mac
            setApplied(reached)
        }
        return loaded
    }

    /// The MAC of the change applied at `sequence` among `events`: the head's `last` when that
    /// change is among them (or was pruned below the floor), else the last one found there.
    private func macAt(_ sequence: Int64, _ events: [RevocationEvent], head: RevocationHead?) -> String? {
        let macs = events.filter { $0.sequence == sequence }.map(\.mac)
        if let head, head.sequence == sequence, macs.contains(head.last) || (macs.isEmpty && sequence <= head.floor) { return head.last }
        return macs.last
    }

    /// The last sequence reached from `start` through `events` (in order) without a hole above
    /// the floor: entries up to the floor may have been pruned, every entry above it must be there.
    private func contiguousEnd(_ events: [RevocationEvent], from start: Int64) -> Int64 {
        var reached = start
        for event in events where event.sequence > reached {
            if reached < floor { reached = max(reached, min(floor, event.sequence - 1)) }
            guard event.sequence == reached + 1 else { break }
            reached = event.sequence
        }
        return max(reached, floor)
    }

    /// Drops expired jti entries: on the actor, the set's only writer (a compaction running
    /// beside an insert could publish a table without the new entry).
    func prune(now: Int64) {
        set.prune(now: now)
    }

    // MARK: Incremental

    /// Applies logged changes after `applied` up to `through`, stopping at a hole above the floor.
    private func catchUp(through: Int64, head: RevocationHead? = nil) async throws {
        guard let epoch else { return }
        // From the entry at `applied` on: a change committed there after this node applied another
        // signed one for that place (a failed write's, replayed) is still applied.
        let events = try await reader.entries(after: max(0, applied - 1), through: through, epoch: epoch)
        guard self.epoch == epoch else { return }  // a resync moved on while this read
        let reached = min(contiguousEnd(events, from: applied), through)
        // Everything signed is enforced, even past a hole; `applied` only moves up to the hole.
        set.applyAll(events.lazy.map(\.revocation), now: Int64(Date().timeIntervalSince1970))
        if reached > applied {
            lastMAC = macAt(reached, events, head: head) ?? ""
            setApplied(reached)
        }
        if applied < through, floor < through {
            reader.alarm.report(key: keys.revocationLog, "entries \(applied + 1)…\(through) of epoch \(epoch) are missing or do not verify")
        }
    }

    /// The most bytes one message takes: a commit of `RevocationWriter.maxChangesPerCommit`
    /// tokens stays far below Redis's 32 MB limit for subscribers.
    static let maxMessageBytes = 64 << 20

    /// A live pub/sub message: one or more event lines.
    func receive(_ message: [UInt8]) async {
        // A message is one commit's lines: more than a commit holds, or a line that does not
        // decode, is a Redis writer's (what it names is read from the log, whose reads are
        // bounded). Decoded line by line to the end, a message of millions of junk lines would
        // hold every gateway's revocation sync while it was decoded.
        guard message.count <= Self.maxMessageBytes else {
            reader.alarm.report(key: keys.revocationChannel, "a message of \(message.count) bytes, more than one commit publishes")
            return
        }
        let lineCount = message.reduce(into: 0) { count, byte in if byte == 0x0A { count += 1 } }
        guard lineCount < RevocationWriter.maxChangesPerCommit else {
            reader.alarm.report(key: keys.revocationChannel, "a message of \(lineCount + 1) lines, more than one commit publishes")
            return
        }
        var events: [RevocationEvent] = []
        for line in RevocationEvent.lines(message) {
            do {
                events.append(try RevocationEvent.decode(Array(line), mac: mac))
            } catch {
                reader.alarm.report(key: keys.revocationChannel, "\(error)")
                break
            }
        }
        guard applied >= 0, !events.isEmpty else { return }  // the first sync picks them up from the log
        guard let epoch else {
            try? await resync(cause: "history_started")
            return
        }
        // Only this history's events count; a later one is followed through its signed head.
        let foreign = events.filter { $0.epoch != epoch }
        if !foreign.isEmpty {
            if foreign.contains(where: { $0.epoch.isNewer(than: epoch) }) {
                try? await resync(cause: "history_changed")
                return
            }
            reader.alarm.report(key: keys.revocationChannel, "an event of an older epoch was published in epoch \(epoch)")
            events.removeAll { $0.epoch != epoch }
        }
        guard let first = events.first, let last = events.last else { return }
        let before = applied
        if first.sequence > applied + 1 {
            do {
                try await catchUp(through: first.sequence - 1)
            } catch {
                logger.warning("could not fetch missing revocations; will retry", metadata: ["error": "\(error)"])
                return
            }
            // A resync while this waited may have moved to another history.
            guard self.epoch == epoch else { return }
        }
        // Everything signed for this history is enforced, even what looks already applied (a
        // second entry signed for a sequence must still take effect); `applied` only moves over
        // consecutive sequence numbers.
        set.applyAll(events.lazy.map(\.revocation), now: Int64(Date().timeIntervalSince1970))
        for event in events where event.sequence == applied + 1 {
            lastMAC = event.mac
            setApplied(event.sequence)
        }
        guard applied > before else { return }
        let latency = latencyMicros(last)
        if last.sequence <= applied, let propagation, let latency { propagation.recordMicroseconds(latency) }
        await acknowledge(latencyMicros: last.sequence == applied ? latency : nil)
    }

    /// The periodic check: read the signed head; catch up to it, or merge into a newer history.
    func check() async throws {
        // What was applied before the head is read: a head read afterwards is at least that (each
        // change is committed with the head before it is published), unless someone rolled it
        // back. Live changes applied while the read is under way (this is an actor, and the read
        // a suspension) would make an honest head look behind.
        let (appliedBeforeRead, epochBeforeRead) = (applied, epoch)
        switch try await reader.head() {
        case .missing:
            if applied > 0 {
                logger.warning("the revocation head is missing from Redis (data loss, or deleted); keeping every revocation held")
            }
            return
        case .invalid:
            return  // reported by the reader; nothing confirmed
        case .valid(let head, _):
            guard let epoch, head.epoch == epoch else {
                try await resync(cause: epoch == nil ? "history_started" : "history_changed")
                return
            }
            floor = max(floor, head.floor)
            if epochBeforeRead == epoch, head.sequence < appliedBeforeRead {
                reader.alarm.report(key: keys.revocationHead, "the head went back to sequence \(head.sequence); this node applied \(appliedBeforeRead)")
                return
            }
            // Applied past the head meanwhile, the checks below still hold for it: its entry is
            // there, and the change applied at its sequence is the one it names (then it confirms).
            let before = applied, beforeMAC = lastMAC
            if head.sequence > applied {
                try await catchUp(through: head.sequence, head: head)
            } else if head.sequence > head.floor, try await reader.entry(at: head.sequence) == nil {
                // Nothing to apply, but the head's own entry must still be there: a wiped or
                // rewritten log would hide every revocation from nodes that start later.
                reader.alarm.report(key: keys.revocationLog, "the entry for the head's sequence \(head.sequence) is missing or does not verify")
                return
            }
            if applied >= head.sequence, head.sequence > head.floor, let mine = macApplied(at: head.sequence), mine != head.last {
                // This node applied, at the head's sequence, a signed change that is not the one
                // committed there (a write that failed after signing, replayed). Re-read the log so
                // the committed one is applied too; until it is found, claim only the one before.
                reader.alarm.report(key: keys.revocationLog, "the change applied at sequence \(head.sequence) is not the one committed there")
                let found = try await reader.entries(after: head.sequence - 1, through: head.sequence, epoch: epoch)
                guard self.epoch == epoch else { return }
                set.applyAll(found.lazy.map(\.revocation), now: Int64(Date().timeIntervalSince1970))
                // Until the committed change is found and applied, nothing is confirmed (stale), and
                // acknowledgements keep naming the other change, which `wait` does not count.
                guard found.contains(where: { $0.mac == head.last }) else { return }
                recentMACs[head.sequence] = head.last
                if applied == head.sequence { lastMAC = head.last }
            }
            confirm(head)
            if applied != before || lastMAC != beforeMAC { await acknowledge(latencyMicros: nil) }
        }
    }

    /// Fresh only when this node holds everything up to a head it has not confirmed with before.
    private func confirm(_ head: RevocationHead) {
        guard head.epoch == epoch, applied >= head.sequence, head.sequence <= head.floor || macApplied(at: head.sequence) == head.last,
              head.beat > confirmedBeat || confirmedBeat < 0 else { return }
        confirmedBeat = head.beat
        staleness.confirm()
    }

    /// The MAC of the change this node applied at `sequence`, if it still remembers it.
    private func macApplied(at sequence: Int64) -> String? {
        sequence == applied ? lastMAC : recentMACs[sequence]
    }

    private func setApplied(_ sequence: Int64) {
        if sequence > applied, !lastMAC.isEmpty {
            recentMACs[sequence] = lastMAC
            if recentMACs.count > 4_096 { recentMACs = recentMACs.filter { $0.key > sequence - 2_048 } }
        }
        applied = sequence
        appliedMirror.store(sequence, ordering: .relaxed)
        let epoch = self.epoch
        positionMirror.withLock { $0 = (epoch, sequence) }
        appliedGauge?.record(sequence)
    }

    /// Durable write to now; nil when implausible (the write time is Redis `TIME`, not signed).
    private func latencyMicros(_ event: RevocationEvent) -> Int64? {
        let latency = Int64(Date().timeIntervalSince1970 * 1_000_000) - event.writtenAtMicros
        return (0...NodeAck.maxLatencyMicros).contains(latency) ? latency : nil
    }

    /// Tells the control plane, with a signed `NodeAck`, that this node applied everything through
    /// `applied` (and how long the last change took, for live events).
    private func acknowledge(latencyMicros: Int64?) async {
        guard let acknowledgements else { return }
        guard let node, let epoch, applied > 0 else { return }
        let nodeID = node.id
        let ack = NodeAck.signed(node: nodeID, instance: node.instance, epoch: epoch, sequence: applied, last: lastMAC,
                                 latencyMicros: latencyMicros, mac: mac)
        latestAck.withLock { $0 = ack }
        let text = RedisArgument(ack.wireText)
        let ackKey = keys.revocationAcks(applied)
        acknowledgements.send(AcknowledgementWriter.Acknowledgement(
            record: NodeRecord.ackUpdate(key: keys.node(nodeID), ack: ack),
            others: [
                ["HSET", RedisArgument(ackKey), RedisArgument(nodeID), text],
                ["EXPIRE", RedisArgument(ackKey), "3600"],
                ["PUBLISH", RedisArgument(keys.ackChannel), text],
            ]))
    }
}
