import Foundation
import Logging
import PortcullisJOSE
import PortcullisRedis

/// The control plane's side of revocations: durable, signed writes, listing, acknowledgements,
/// pruning. A write either lands in Redis (log entries, indexes, the new signed head and the
/// pub/sub push, all in one Lua script) and is acknowledged, or throws: nothing is ever
/// acknowledged that Redis did not confirm.
///
/// Every change is signed for its exact place — epoch and sequence — before it is written, so the
/// script only accepts it if the head is still the one the writer read (compare-and-set); two
/// control planes side by side retry on conflict. Concurrent calls in one process are committed
/// together (group commit: one script call, consecutive sequence numbers, one pub/sub message).
public final class RevocationStore: Sendable {
    private let client: RedisClient
    private let keys: ClusterKeys
    private let mac: ClusterMAC
    private let reader: RevocationLogReader
    private let writer: RevocationWriter
    private let maxTokenLifetime: Int64

    /// - Parameter knownPosition: how far this process has seen the log (the control plane's own
    ///   follower): a head behind it is a rollback, never continued.
    /// - Parameter requiredReplicas: replicas that must confirm every write (`WAIT`, for at most
    ///   `replicaTimeout`) before it counts as durable; 0 for none.
    public init(client: RedisClient, keys: ClusterKeys, mac: ClusterMAC, maxTokenLifetime: Duration, requiredReplicas: Int = 0,
                replicaTimeout: Duration = .seconds(1), logger: Logger = Logger(label: "portcullis.revocations"),
                knownPosition: @escaping @Sendable () -> (epoch: RevocationEpoch?, sequence: Int64) = { (nil, -1) }) {
        self.client = client
        self.keys = keys
        self.mac = mac
        self.maxTokenLifetime = maxTokenLifetime.components.seconds
        reader = RevocationLogReader(client: client, keys: keys, mac: mac, alarm: TamperingAlarm(prefix: keys.prefix, logger: logger),
                                     removesOversized: true)
        writer = RevocationWriter(client: client, keys: keys, mac: mac, reader: reader, logger: logger,
                                  requiredReplicas: requiredReplicas, replicaTimeout: replicaTimeout, knownPosition: knownPosition)
    }

    /// Makes a revocation durable and pushes it to every node.
    /// - Throws: `RedisError` when Redis did not confirm; `ClusterError.notDurable` when required replicas did not.
    public func write(_ revocation: Revocation) async throws -> RevocationEvent {
        try await writeBatch([revocation])[0]
    }

    /// Makes several changes durable atomically (one script: all or none), as consecutive
    /// sequence numbers pushed in one pub/sub message.
    public func writeBatch(_ revocations: [Revocation]) async throws -> [RevocationEvent] {
        guard !revocations.isEmpty else { return [] }
        for revocation in revocations {
            if let problem = revocation.shapeProblem { throw ClusterError.invalid("revocation \(revocation.id): \(problem)") }
        }
        let now = Int64(Date().timeIntervalSince1970)
        let changes = revocations.map { RevocationWriter.Change(revocation: $0, pruneAt: pruneTime($0, now: now)) }
        return try await writer.submit(changes)
    }

    /// When a change's log entry may go: a jti change when its last token has expired, a session
    /// change at its `until`; a lift (and the cut-off it lifts) once any token it could matter for
    /// has expired; cut-offs and keys in force never.
    private func pruneTime(_ revocation: Revocation, now: Int64) -> String {
        if let time = revocation.prunableAt { return RevocationWriter.Change.score(time) }
        return revocation.operation == .delete ? String(now + maxTokenLifetime + RevocationSet.expiryGrace) : "+inf"
    }

    /// Re-signs the head with a new beat (the control plane's heartbeat), creating the first
    /// epoch when Redis has no valid head. Nodes count their state as fresh only after seeing a
    /// new beat, so without this a quiet cluster would look stale to them.
    @discardableResult
    public func heartbeat() async throws -> RevocationHead {
        try await writer.beat()
    }

    /// The current signed head, if Redis has a valid one.
    public func head() async throws -> RevocationHead? {
        if case .valid(let head, _) = try await reader.head() { return head }
        return nil
    }

    /// The sequence number of the latest change (0 without a valid head).
    public func currentSequence() async throws -> Int64 {
        try await head()?.sequence ?? 0
    }

    /// Changes still in the log, oldest first, after `afterSequence`, optionally filtered.
    public func list(kind: Revocation.Kind? = nil, value: String? = nil, afterSequence: Int64 = 0, limit: Int = 100) async throws -> [RevocationEvent] {
        var result: [RevocationEvent] = []
        var seen = Set<String>()
        var cursor = Double(afterSequence)
        let pageLimit = Int64(min(max(limit * 2, 100), RevocationLogRange.maxExamined))
        while result.count < limit {
            // Bounded in members and bytes; advanced by score, so entries that do not verify cannot stall the listing.
            let read = try await reader.range.byScore(after: cursor, through: .max, limit: pageLimit)
            for event in try await reader.verified(read) where seen.insert(event.mac).inserted {
                if let kind, event.revocation.kind != kind { continue }
                if let value, !ExactString.equal(event.revocation.value, value), !event.revocation.batch.contains(where: { ExactString.equal($0.jti, value) }) {
                    continue
                }
                result.append(event)
                if result.count == limit { break }
            }
            guard let next = RevocationLogReader.cursor(after: read, from: cursor, limit: pageLimit) else { break }
            cursor = next
        }
        return result
    }

    /// The first valid change after `sequence` (its write time tells how long a node lags).
    public func nextEntry(after sequence: Int64) async throws -> RevocationEvent? {
        // A few members: the next sequence's entry, and its replay beside it.
        let read = try await reader.range.byScore(after: Double(sequence), through: .max, limit: 4)
        return try await reader.verified(read).min { $0.sequence < $1.sequence }
    }

    /// One change by its id (the index is checked: the entry found must carry that id).
    public func get(id: String) async throws -> RevocationEvent? {
        guard let sequence = try await client.send("HGET", RedisArgument(keys.revocationIDs), RedisArgument(id)).int,
              let event = try await reader.entry(at: sequence) else { return nil }
        guard event.revocation.id == id else {
            reader.alarm.report(key: keys.revocationIDs, "index entry '\(id)' points at sequence \(sequence), which holds '\(event.revocation.id)'")
            return nil
        }
        return event
    }

    /// Reports tampering the control plane noticed outside the log (counted and logged like the rest).
    public func reportTampering(key: String, _ reason: String) {
        reader.alarm.report(key: key, reason)
    }

    /// Whether `ack` confirms the change `event`: the node applied everything through a sequence
    /// at or past it, and the change it applied there is the one committed there (known from this
    /// writer's memory of its commits, or from the signed head) — so a signed change whose write
    /// failed, replayed to a node, never counts.
    public func confirms(_ ack: NodeAck, _ event: RevocationEvent, head: RevocationHead?) async -> Bool {
        guard ack.epoch == event.epoch, ack.sequence >= event.sequence else { return false }
        if ack.sequence == event.sequence { return ack.last == event.mac }
        if let committed = await writer.committedMAC(epoch: event.epoch, sequence: ack.sequence) { return ack.last == committed }
        if let head, head.epoch == ack.epoch, head.sequence == ack.sequence { return ack.last == head.last }
        return false
    }

    /// The authenticated acknowledgements of `sequence`, by node id: only acks that verify, are
    /// stored under their own node's name and belong to `epoch`. Forged ones are reported.
    public func acknowledgements(sequence: Int64, epoch: RevocationEpoch) async throws -> [String: NodeAck] {
        let key = keys.revocationAcks(sequence)
        let hash: [RedisValue]
        switch try await BoundedHashRead.acknowledgements.read(client, key: key) {
        case .hash(let fields): hash = fields
        case .refused(let why):
            reader.alarm.report(key: key, "ignoring the acknowledgements: \(why)")
            return [:]
        }
        let fields = hash.hashFields()
        var acks: [String: NodeAck] = [:]
        for (node, text) in fields {
            guard let ack = try? NodeAck.decode(text, mac: mac), ack.node == node, ack.sequence == sequence else {
                reader.alarm.report(key: key, "acknowledgement for node '\(node)' does not verify")
                continue
            }
            if ack.epoch == epoch { acks[node] = ack }
        }
        return acks
    }

    /// The most entries one `prune` call nominates.
    public static let pruneBatch = 10_000

    /// Removes log entries whose time has passed and raises the head's floor to the highest
    /// sequence removed, so nodes know holes up to there are pruning, not tampering.
    ///
    /// `rev:expiry` only nominates candidates: what is removed is decided from the signed entries
    /// themselves — a jti change once its last token expired (plus the grace), a lift (and the
    /// cut-off it names) once `max_token_lifetime` has passed since it was made. So a Redis writer
    /// cannot make the control plane sign a floor over entries still in force, and every entry
    /// removed was written at least `RevocationSet.expiryGrace` ago.
    public func prune(now: Int64 = Int64(Date().timeIntervalSince1970)) async throws -> Int {
        let nominated = (try await client.send("ZRANGEBYSCORE", RedisArgument(keys.revocationExpiry), "-inf", RedisArgument(now),
                                               "LIMIT", "0", RedisArgument(Self.pruneBatch)).array ?? [])
            .compactMap { $0.int ?? $0.string.flatMap { Int64($0) } }.filter { $0 > 0 }
        guard !nominated.isEmpty else { return 0 }
        var due: [Int64: (id: String, member: [UInt8])] = [:]
        var epochs = Set<RevocationEpoch>()
        // Runs of consecutive sequences, each read by one bounded range (see `RevocationLogRange`).
        let wanted = Set(nominated)
        var runs: [ClosedRange<Int64>] = []
        for sequence in wanted.sorted() {
            if let run = runs.last, run.upperBound + 1 == sequence { runs[runs.count - 1] = run.lowerBound...sequence } else { runs.append(sequence...sequence) }
        }
        for run in runs {
            for (event, member) in try await reader.entryMembers(after: run.lowerBound - 1, through: run.upperBound, epoch: nil)
            where wanted.contains(event.sequence) {
                let revocation = event.revocation
                switch (revocation.prunableAt, revocation.operation) {
                case (let time?, _):
                    guard time <= now else { continue }
                    due[event.sequence] = (revocation.id, member)
                    epochs.insert(event.epoch)
                case (nil, .delete):
                    guard revocation.createdAtMillis / 1000 + maxTokenLifetime + RevocationSet.expiryGrace <= now else { continue }
                    due[event.sequence] = (revocation.id, member)
                    epochs.insert(event.epoch)
                    if let lifts = revocation.lifts, let sequence = try await client.send("HGET", RedisArgument(keys.revocationIDs), RedisArgument(lifts)).int,
                       let lifted = try await reader.entryMembers(after: sequence - 1, through: sequence, epoch: event.epoch)
                           .first(where: { $0.event.revocation.id == lifts }) {
                        due[lifted.event.sequence] = (lifts, lifted.member)
                    }
                default:
                    continue  // in force until a lift names it (pruned with that lift)
                }
            }
        }
        // Nominations the signed entries do not bear out are left alone (and not removed from the index).
        guard let highest = due.keys.max(), epochs.count == 1, let epoch = epochs.first else { return 0 }
        // Floor first, so no reader sees the hole without it — and only in the epoch these
        // sequences belong to: if a new epoch started meanwhile (another control plane, a garbled
        // head), its entries at these sequences are other changes, carried ones among them.
        guard try await writer.raiseFloor(to: highest, epoch: epoch) else { return 0 }
        var commands: [[RedisArgument]] = []
        for (sequence, entry) in due {
            // The exact entry verified, not whatever now sits at its score.
            commands.append(["ZREM", RedisArgument(keys.revocationLog), RedisArgument(bytes: entry.member)])
            commands.append(["ZREM", RedisArgument(keys.revocationExpiry), RedisArgument(sequence)])
        }
        commands.append(["HDEL", RedisArgument(keys.revocationIDs)] + due.values.map { RedisArgument($0.id) })
        for reply in try await client.pipeline(commands) { _ = try reply.get() }
        return due.count
    }
}
