import Foundation
import Logging
import PortcullisRedis

/// Appends signed changes to the revocation log, one committer per process.
///
/// Changes submitted while a commit is in flight wait and go together in the next one (group
/// commit). Each commit signs its changes for the sequence numbers after the head it read, and
/// the script writes them only if that head is still current; otherwise the head is read again
/// and the changes re-signed. A head that does not verify, or that went back (same epoch, lower
/// sequence than this writer or the log has seen), is tampering: the writer starts a new epoch,
/// which empties the log after carrying into it, re-signed, every change of the old log that
/// verifies; nodes merge into it keeping everything they hold.
actor RevocationWriter {
    struct Change: Sendable {
        var revocation: Revocation
        /// `rev:expiry` score: Unix seconds, or `+inf`.
        var pruneAt: String

        /// The score of a prune time: `+inf` for `Int64.max` (never).
        static func score(_ time: Int64) -> String { time == .max ? "+inf" : String(time) }
    }

    private struct Pending {
        var changes: [Change]
        var continuation: CheckedContinuation<[RevocationEvent], any Error>
    }

    private let client: RedisClient
    private let keys: ClusterKeys
    private let mac: ClusterMAC
    private let reader: RevocationLogReader
    private let logger: Logger
    private let knownPosition: @Sendable () -> (epoch: RevocationEpoch?, sequence: Int64)
    /// Replicas that must confirm each commit (`WAIT`), 0 for none, and the longest wait.
    private let requiredReplicas: Int
    private let replicaTimeout: Duration
    /// The head this writer last wrote or verified, and the SHA-1 of its text
    /// (`RevocationLogReader.digest`); nil: read it again.
    private var current: (head: RevocationHead, digest: String)?
    /// The furthest this process has seen, to refuse a head that was rolled back.
    private var highest: RevocationHead?
    private var pending: [Pending] = []
    /// MACs of the changes this writer committed lately, by sequence, in `committedEpoch`: an
    /// acknowledgement counts for a sequence only if it names the change committed there.
    private var committed: [Int64: String] = [:]
    private var committedEpoch: RevocationEpoch?
    private static let committedKept: Int64 = 200_000
    private var draining = false
    private static let maxAttempts = 10
    /// Most changes in one commit: a batch call always fits alone, and the pub/sub message stays
    /// far below Redis's default output-buffer limit for subscribers (8 MB soft, 32 MB hard).
    static let maxChangesPerCommit = 12_000

    init(client: RedisClient, keys: ClusterKeys, mac: ClusterMAC, reader: RevocationLogReader, logger: Logger,
         requiredReplicas: Int = 0, replicaTimeout: Duration = .seconds(1),
         knownPosition: @escaping @Sendable () -> (epoch: RevocationEpoch?, sequence: Int64)) {
        self.requiredReplicas = requiredReplicas
        self.replicaTimeout = replicaTimeout
        self.client = client
        self.keys = keys
        self.mac = mac
        self.reader = reader
        self.logger = logger
        self.knownPosition = knownPosition
    }

    func submit(_ changes: [Change]) async throws -> [RevocationEvent] {
        try await withCheckedThrowingContinuation { continuation in
            pending.append(Pending(changes: changes, continuation: continuation))
            if !draining {
                draining = true
                Task { await self.drain() }
            }
        }
    }

    private func drain() async {
        while !pending.isEmpty {
            var count = 0
            let taken = pending.prefix { item in
                defer { count += item.changes.count }
                return count == 0 || count + item.changes.count <= Self.maxChangesPerCommit
            }
            let group = Array(taken)
            pending.removeFirst(group.count)
            do {
                let events = try await commit(group.flatMap(\.changes), floor: nil).events
                var offset = 0
                for item in group {
                    item.continuation.resume(returning: Array(events[offset..<(offset + item.changes.count)]))
                    offset += item.changes.count
                }
            } catch {
                for item in group { item.continuation.resume(throwing: error) }
            }
        }
        draining = false
    }

    /// A new beat on the head (no change).
    func beat() async throws -> RevocationHead {
        _ = try await commit([], floor: nil)
        guard let head = current?.head else { throw ClusterError.unexpectedReply("no head after a heartbeat") }
        return head
    }

    /// Raises the head's floor (pruning) to `floor`, a sequence of `epoch`; false, and nothing
    /// raised, when the head is of another epoch by the time it is written (a new epoch started
    /// meanwhile: its entries at those sequences are other changes, which the caller must not
    /// remove).
    func raiseFloor(to floor: Int64, epoch: RevocationEpoch) async throws -> Bool {
        try await commit([], floor: (floor, epoch)).floorRaised
    }

    /// One commit at a time in this process: carrying changes into a new epoch spans several
    /// writes, and `carryTail` must not be read by one commit while another changes it.
    private var committing = false
    private var waitingToCommit: [CheckedContinuation<Void, Never>] = []
    /// Changes being carried into a new epoch that are not written yet. Written ahead of every
    /// other change, into whatever epoch is current, until none is left: a carry cut short (the
    /// head changed between two chunks — another control plane's beat — or Redis failed) is
    /// finished by the next commit rather than lost, since the first chunk already emptied the
    /// old log. Lost only if this process ends first.
    private var carryTail: [Change] = []

    private func commit(_ changes: [Change], floor: (value: Int64, epoch: RevocationEpoch)?) async throws
        -> (events: [RevocationEvent], floorRaised: Bool) {
        if committing {
            await withCheckedContinuation { waitingToCommit.append($0) }
        } else {
            committing = true
        }
        defer {
            if waitingToCommit.isEmpty { committing = false } else { waitingToCommit.removeFirst().resume() }
        }
        for _ in 0..<Self.maxAttempts {
            var (base, expected, reset) = try await baseForWriting()
            if reset {
                // A new epoch empties the log: first carry into it every signed change the old log
                // still holds, so that a node that had not applied them yet (cut off, paused) finds
                // them in the new history instead of merging into an empty one, current and without
                // them — an unsigned write to the head would otherwise make nodes forget.
                // (What an earlier try already took up is not taken twice.)
                let pending = Set(carryTail.map(\.revocation.id))
                let carried = try await carriedOver().filter { !pending.contains($0.revocation.id) }
                if !carried.isEmpty {
                    carryTail = carried + carryTail
                    logger.error("carrying the old revocation log's signed changes into the new epoch",
                                 metadata: ["epoch": "\(base.epoch)", "changes": "\(carried.count)"])
                }
            }
            while !carryTail.isEmpty {
                let chunk = Self.carryChunk(carryTail)
                guard try await write(chunk, base: base, expected: expected, reset: reset, floor: nil, waitForReplicas: false) != nil,
                      let current else { break }
                carryTail.removeFirst(chunk.count)
                (base, expected, reset) = (current.head, current.digest, false)
            }
            guard carryTail.isEmpty else { continue }
            // A floor names sequences of the epoch it was computed in.
            let raise = floor.flatMap { $0.epoch == base.epoch && !reset ? $0.value : nil }
            guard let written = try await write(changes, base: base, expected: expected, reset: reset, floor: raise,
                                                waitForReplicas: !changes.isEmpty) else { continue }
            return (written, raise != nil)
        }
        throw ClusterError.notDurable("the revocation head kept changing under this writer (another writer, or tampering); nothing was written")
    }

    /// The first changes of `tail` that go in one write: bounded by the tokens they carry (a
    /// batch change holds up to 1 000), so that the write's pub/sub message stays far below
    /// Redis's output-buffer limit for subscribers, as `maxChangesPerCommit` does for changes.
    static func carryChunk(_ tail: [Change]) -> [Change] {
        var tokens = 0
        var count = 0
        for change in tail {
            let weight = 1 + change.revocation.batch.count
            if count > 0, tokens + weight > maxChangesPerCommit { break }
            tokens += weight
            count += 1
        }
        return Array(tail.prefix(count))
    }

    /// The changes of the old log that verify, of its newest epoch, in sequence order — all but
    /// token revocations already past their expiry — with the prune times the old log gave
    /// lifts (token revocations' are their expiry, cut-offs are kept for good).
    private func carriedOver() async throws -> [Change] {
        var events: [RevocationEvent] = []
        var start = 0
        do {
            while true {
                let (page, next) = try await reader.page(start: start, count: 1_000, epoch: nil)
                events += page
                guard let next else { break }
                start = next
            }
        } catch let error as RedisError where error.errorCode == "WRONGTYPE" || "\(error)".contains("WRONGTYPE") {
            // (Redis 6 reports a script's WRONGTYPE inside an ERR.)
            return []  // nothing to carry; the write script reports the key and refuses to write
        }
        guard let newest = events.map(\.epoch).max(by: { $1.isNewer(than: $0) }) else { return [] }
        let expiry = (try? await client.send("ZRANGE", RedisArgument(keys.revocationExpiry), "0", "-1", "WITHSCORES").array) ?? []
        var pruneAt: [String: String] = [:]
        var index = 0
        while index + 1 < expiry.count {
            if let sequence = expiry[index].string, let score = expiry[index + 1].string { pruneAt[sequence] = score }
            index += 2
        }
        let now = Int64(Date().timeIntervalSince1970)
        return events.filter { $0.epoch == newest }.sorted { $0.sequence < $1.sequence }.compactMap { event in
            let revocation = event.revocation
            switch (revocation.prunableAt, revocation.operation) {
            case (let time?, _):
                if time < now { return nil }
                return Change(revocation: revocation, pruneAt: Change.score(time))
            case (nil, .delete):
                let score = pruneAt[String(event.sequence)].flatMap { Int64($0) }.map(String.init) ?? "+inf"
                return Change(revocation: revocation, pruneAt: score)
            default:
                return Change(revocation: revocation, pruneAt: "+inf")
            }
        }
    }

    /// One compare-and-set commit of `changes` after `base`; nil when the head in Redis is no
    /// longer `expected` (read again and retry).
    private func write(_ changes: [Change], base: RevocationHead, expected: String, reset: Bool, floor: Int64?,
                       waitForReplicas: Bool) async throws -> [RevocationEvent]? {
        var events: [RevocationEvent] = []
        events.reserveCapacity(changes.count)
        var arguments: [RedisArgument] = []
        for (offset, change) in changes.enumerated() {
            let event = RevocationEvent.signed(change.revocation, epoch: base.epoch, sequence: base.sequence + Int64(offset) + 1, mac: mac)
            events.append(event)
            arguments += RevocationCommit.changeArguments(event, pruneAt: change.pruneAt)
        }
        let next = RevocationHead.signed(epoch: base.epoch, sequence: base.sequence + Int64(changes.count), last: events.last?.mac ?? base.last,
                                         floor: min(max(base.floor, floor ?? 0), base.sequence), beat: base.beat + 1, mac: mac)
        let reply: RedisValue
        let replicated: Int64?
        do {
            (reply, replicated) = try await runScript(waitForReplicas: waitForReplicas, keys: [
            RedisArgument(keys.revocationHead), RedisArgument(keys.revocationLog), RedisArgument(keys.revocationExpiry),
            RedisArgument(keys.revocationIDs),
            ], arguments: RevocationCommit.arguments(expectedDigest: expected, next: next, reset: reset, channel: keys.revocationChannel,
                                                     count: changes.count) + arguments)
        } catch {
            // The script may have written part of the change before failing: never sign another
            // change for the same place. The next write re-reads, finds the log ahead of the
            // head, and starts a new epoch.
            current = nil
            throw error
        }
        guard let items = reply.array, items.count == 2, let ok = items[0].int else {
            current = nil
            throw ClusterError.unexpectedReply("revocation write script answered \(reply)")
        }
        if ok == 2 {
            current = nil
            reader.alarm.report(key: items[1].string ?? keys.revocationLog, "a revocation key has the wrong type; nothing was written")
            throw ClusterError.notDurable("Redis key \(items[1].string ?? "?") has the wrong type (tampering?); nothing was written")
        }
        guard ok == 1 else {
            current = nil  // someone else wrote (or a writer without the secret did): read again
            return nil
        }
        let written = items[1].string.flatMap { Int64($0) } ?? 0
        current = (next, RevocationLogReader.digest(next.wireText))
        highest = next
        remember(events, epoch: next.epoch)
        if let replicated, replicated < Int64(requiredReplicas) {
            // Written on the primary (and pushed to the nodes), but a failover now could lose it.
            throw ClusterError.notDurable("only \(replicated) of \(requiredReplicas) Redis replicas confirmed the write within \(replicaTimeout)"
                                          + " (it is on the primary and was pushed to the nodes; a failover before it replicates would lose it)")
        }
        return events.map { var event = $0; event.writtenAtMicros = written; return event }
    }

    /// Runs the write script; with `requiredReplicas` and `waitForReplicas`, `WAIT` goes in the
    /// same pipeline, so it runs on the connection that wrote (on another connection — after a
    /// reconnect — `WAIT` would have no write to wait for and answer at once). Returns the
    /// script's reply and how many replicas confirmed (nil when not waited for).
    ///
    /// Beats and floor raises do not wait: they carry no revocation, and waiting would stop the
    /// heartbeat — and so make every gateway stale and fail closed — whenever no replica answers
    /// (e.g. right after a failover, before the old primary rejoins as a replica).
    private func runScript(waitForReplicas: Bool, keys: [RedisArgument], arguments: [RedisArgument]) async throws -> (RedisValue, Int64?) {
        guard requiredReplicas > 0, waitForReplicas else {
            return (try await client.evalScript(RevocationCommit.script, keys: keys, arguments: arguments), nil)
        }
        let call: [RedisArgument] = ["EVALSHA", RedisArgument(RevocationCommit.script.sha1), RedisArgument(keys.count)] + keys + arguments
        let wait: [RedisArgument] = ["WAIT", RedisArgument(requiredReplicas), RedisArgument(max(1, replicaTimeout.wholeMilliseconds))]
        for attempt in 0..<2 {
            let results = try await client.pipeline([call, wait])
            switch results[0] {
            case .failure(let error) where error.errorCode == "NOSCRIPT" && attempt == 0:
                _ = try await client.send("SCRIPT", "LOAD", RedisArgument(RevocationCommit.script.source))
                continue
            case .failure(let error):
                throw error
            case .success(let reply):
                // The script committed; a WAIT that errs (NOPERM, a demoted server) confirmed nothing.
                return (reply, (try? results[1].get())?.int ?? 0)
            }
        }
        throw ClusterError.unexpectedReply("the revocation write script is not loaded after SCRIPT LOAD")
    }

    /// The head to write after, the digest of the text the script must still find, and whether the log is
    /// to be emptied (a new epoch).
    private func baseForWriting() async throws -> (RevocationHead, String, Bool) {
        if let current { return (current.head, current.digest, false) }
        let nowMillis = Int64(Date().timeIntervalSince1970 * 1000)
        // What was seen before the head is read: a head read afterwards is at least that, unless
        // rolled back. (Positions taken after the read may include commits made meanwhile — by
        // another control plane, or a beat of this one — and make an honest head look behind.)
        let (known, seen) = (knownPosition(), highest)
        let newest = [seen?.epoch, known.epoch].compactMap { $0 }.max { $1.isNewer(than: $0) }
        switch try await reader.head(forWriting: true) {
        case .missing:
            let epoch = RevocationEpoch.new(nowMillis: nowMillis, after: newest)
            if highest != nil {
                logger.error("the revocation head is gone from Redis (data loss, or deleted); starting a new epoch — nodes keep what they hold",
                             metadata: ["epoch": "\(epoch)"])
            }
            return (RevocationHead(epoch: epoch, sequence: 0, last: "", floor: 0, beat: 0, mac: ""), RevocationLogReader.digest(""), true)
        case .invalid(let digest):
            let epoch = RevocationEpoch.new(nowMillis: nowMillis, after: newest)
            logger.error("the revocation head in Redis does not verify; starting a new epoch", metadata: ["epoch": "\(epoch)"])
            return (RevocationHead(epoch: epoch, sequence: 0, last: "", floor: 0, beat: 0, mac: ""), digest, true)
        case .valid(let head, let digest):
            if let rolledBack = try await rollback(of: head, known: known, seen: seen) {
                reader.alarm.report(key: keys.revocationHead, rolledBack)
                let epoch = RevocationEpoch.new(nowMillis: nowMillis, after: newest.map { $0.isNewer(than: head.epoch) ? $0 : head.epoch } ?? head.epoch)
                logger.error("starting a new revocation epoch after a rolled-back head", metadata: ["epoch": "\(epoch)"])
                return (RevocationHead(epoch: epoch, sequence: 0, last: "", floor: 0, beat: 0, mac: ""), digest, true)
            }
            highest = head
            return (head, digest, false)
        }
    }

    private func remember(_ events: [RevocationEvent], epoch: RevocationEpoch) {
        if committedEpoch != epoch {
            committed = [:]
            committedEpoch = epoch
        }
        for event in events { committed[event.sequence] = event.mac }
        if let newest = events.last?.sequence, committed.count > Int(Self.committedKept) {
            committed = committed.filter { $0.key > newest - Self.committedKept / 2 }
        }
    }

    /// The MAC of the change this writer committed at `sequence` of `epoch`, if it remembers it.
    func committedMAC(epoch: RevocationEpoch, sequence: Int64) -> String? {
        committedEpoch == epoch ? committed[sequence] : nil
    }

    /// Why `head` cannot be continued: older than what this process had seen before reading it
    /// (`known`, its follower's position; `seen`, the furthest head this writer saw), or behind
    /// the log's own last signed entry.
    private func rollback(of head: RevocationHead, known: (epoch: RevocationEpoch?, sequence: Int64),
                          seen: RevocationHead?) async throws -> String? {
        if let epoch = known.epoch {
            if epoch.isNewer(than: head.epoch) { return "the head went back to an older epoch (\(head.epoch), after \(epoch))" }
            if epoch == head.epoch, head.sequence < known.sequence {
                return "the head went back to sequence \(head.sequence) (this control plane applied \(known.sequence))"
            }
        }
        if let highest = seen {
            if highest.epoch.isNewer(than: head.epoch) { return "the head went back to an older epoch (\(head.epoch), after \(highest.epoch))" }
            if highest.epoch == head.epoch, head.sequence == highest.sequence, head.last != highest.last {
                return "the head names another change at sequence \(head.sequence) than the one this writer committed there"
            }
            if highest.epoch == head.epoch, head.sequence < highest.sequence || head.beat < highest.beat {
                return "the head went back to sequence \(head.sequence) beat \(head.beat) (this writer wrote \(highest.sequence) beat \(highest.beat))"
            }
        }
        if let last = try await reader.last() {
            if last.epoch.isNewer(than: head.epoch) { return "the log holds an entry of a newer epoch (\(last.epoch)) than the head's" }
            if last.epoch == head.epoch, last.sequence > head.sequence {
                // Committed after the head was read (the head moved on with it)? Then the CAS on
                // the stale head fails and the write is tried again: no rollback.
                if case .valid(let now, _) = try await reader.head(), now.epoch == head.epoch, now.sequence >= last.sequence { return nil }
                return "the head says sequence \(head.sequence) but the log holds signed sequence \(last.sequence)"
            }
        }
        return nil
    }
}
