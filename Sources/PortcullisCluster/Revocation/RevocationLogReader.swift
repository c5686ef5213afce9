import Crypto
import PortcullisRedis

/// Reads the signed revocation log and its head, and checks every entry where it was found:
/// its MAC, that its signed sequence equals its score, and (when asked) that it belongs to the
/// expected epoch. What fails is reported to the `TamperingAlarm` and left out; nothing unsigned
/// is ever returned. Shared by the nodes' sync and the control plane.
struct RevocationLogReader: Sendable {
    let client: RedisClient
    let keys: ClusterKeys
    let mac: ClusterMAC
    let alarm: TamperingAlarm
    /// Whether members longer than any change are removed where reads find them (the control
    /// plane's readers: gateways may not write the log).
    var removesOversized = false

    var range: RevocationLogRange { RevocationLogRange(client: client, key: keys.revocationLog) }

    enum Head: Sendable {
        /// No head: a new cluster, or Redis lost its data (or a writer deleted it).
        case missing
        /// Present but not a valid signed head (its digest is kept for compare-and-set).
        case invalid(digest: String)
        case valid(RevocationHead, digest: String)
    }

    /// The head if it is a string of at most `RevocationHead.maxBytes`; else its size (or -2 for
    /// a key of another type) and, when ARGV[2] is 1 (the writer, for its compare-and-set), the
    /// SHA-1 of what is there. Read whole, a head a Redis writer padded with spaces would cost
    /// every node and the control plane memory in proportion at every check.
    static let headScript = RedisScript("""
    local n = redis.pcall('STRLEN', KEYS[1])
    if type(n) == 'table' then return {-2, ''} end
    if n > tonumber(ARGV[1]) then
      if ARGV[2] == '1' then return {n, redis.sha1hex(redis.call('GET', KEYS[1]))} end
      return {n, ''}
    end
    return redis.call('GET', KEYS[1])
    """)

    /// The SHA-1 (hex) of a head's text, as the write script compares it (`""` for no head).
    static func digest(_ raw: String) -> String {
        digest(Array(raw.utf8))
    }

    static func digest(_ raw: [UInt8]) -> String {
        Insecure.SHA1.hash(data: raw).map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined()
    }

    /// The head; `forWriting` also has an oversized one's digest computed (by Redis).
    func head(forWriting: Bool = false) async throws -> Head {
        let reply = try await client.evalScript(Self.headScript, keys: [RedisArgument(keys.revocationHead)],
                                                arguments: [RedisArgument(RevocationHead.maxBytes), forWriting ? "1" : "0"], readOnly: true)
        if let parts = reply.array, parts.count == 2, let size = parts[0].int {
            alarm.report(key: keys.revocationHead, size < 0 ? "the head is not a string" : "the head is \(size) bytes, more than a signed head takes")
            return .invalid(digest: parts[1].string ?? "")
        }
        guard let bytes = reply.bytes else { return .missing }
        // Not UTF-8 is not a head either (read as missing, its digest never matched "").
        guard let raw = String(validating: bytes, as: UTF8.self) else {
            alarm.report(key: keys.revocationHead, "the head is not UTF-8 text")
            return .invalid(digest: Self.digest(bytes))
        }
        do {
            return .valid(try RevocationHead.decode(raw, mac: mac), digest: Self.digest(raw))
        } catch {
            alarm.report(key: keys.revocationHead, "\(error)")
            return .invalid(digest: Self.digest(raw))
        }
    }

    /// Entries with `after < sequence ≤ through`, verified, in sequence order, read in pages of
    /// at most `readLimit(after:through:)` members and `RevocationLogRange.pageBytes` (a node far
    /// behind reads several). A full page goes on from its last sequence (read again, in case the
    /// page ended inside it), or past it when the whole page was that one sequence: members a
    /// Redis writer piled up there beyond the bounds are never read.
    func entries(after: Int64, through: Int64, epoch: RevocationEpoch?) async throws -> [RevocationEvent] {
        try await entryMembers(after: after, through: through, epoch: epoch).map(\.event)
    }

    /// `entries(after:through:epoch:)`, with each entry's member as stored, to remove exactly that entry.
    func entryMembers(after: Int64, through: Int64, epoch: RevocationEpoch?) async throws -> [(event: RevocationEvent, member: [UInt8])] {
        var entries: [(event: RevocationEvent, member: [UInt8])] = []
        var seen = Set<String>()
        var cursor = Double(after)
        while cursor < Double(through) {
            let limit = min(Self.readLimit(after: Int64(cursor.rounded(.down)), through: through), Int64(RevocationLogRange.maxExamined))
            let read = try await range.byScore(after: cursor, through: through, limit: limit)
            // A sequence read on two pages yields its entries twice.
            entries += try await verifiedEntries(read, epoch: epoch).filter { seen.insert($0.event.mac).inserted }
            guard let next = Self.cursor(after: read, from: cursor, limit: limit) else { break }
            cursor = next
        }
        return entries
    }

    /// Where a read by score that began after `from` goes on (an exclusive score), nil when it
    /// reached the end: past its last score when that is no sequence (a Redis writer's) or when
    /// that one score filled the whole read (members piled there beyond the bounds are never
    /// read), else at its last score again from the start, in case the read ended inside it.
    static func cursor(after read: RevocationLogRange.Read, from: Double, limit: Int64) -> Double? {
        guard read.truncated || read.examined == limit, let last = read.lastScore, last > from else { return nil }
        if last != last.rounded(.down) || !last.isFinite || read.firstScore == last { return last }
        return last.nextDown
    }

    /// How many log members a read of the sequences `after < s ≤ through` takes at most. Each
    /// sequence holds one signed entry, two while a failed write's replay stands beside it; a
    /// Redis writer may add any number of unsigned ones at the same scores. Were every member at
    /// the head's sequence read on every check, enough copies there would take each check past
    /// `max_staleness`. Bounded, a check costs at most this many decodes; entries crowded out by
    /// junk read as missing (reported, stale), as if the writer had deleted them.
    static func readLimit(after: Int64, through: Int64) -> Int64 {
        min(max(through - after, 1), 50_000) * 2 + 64
    }

    /// One page of the log by rank (from `start`, at most `count` members and
    /// `RevocationLogRange.pageBytes`), verified, in sequence order; and the rank the next page
    /// starts at, nil at the end. A full sync reads page by page, so a node never holds more than
    /// one page of entries (a batch entry carries up to 1 000 tokens).
    func page(start: Int, count: Int, epoch: RevocationEpoch?) async throws -> (events: [RevocationEvent], next: Int?) {
        let limit = min(count, RevocationLogRange.maxExamined)
        let read = try await range.byRank(start: start, count: limit)
        let more = read.truncated || read.examined == limit
        // Nothing removed here: a removal would move the members after it to lower ranks, and
        // the next page would miss as many.
        return (try await verified(read, epoch: epoch, removing: false).sorted { $0.sequence < $1.sequence }, more ? start + max(read.examined, 1) : nil)
    }

    /// The last entry of the log, if it verifies.
    func last() async throws -> RevocationEvent? {
        try await verified(try await range.byRank(start: -1, count: 1)).last
    }

    /// The entry at `sequence`, if present and valid.
    func entry(at sequence: Int64) async throws -> RevocationEvent? {
        guard sequence > 0 else { return nil }
        return try await entries(after: sequence - 1, through: sequence, epoch: nil).first
    }

    /// The entries of a bounded read that verify (see `verifiedEntries(_:epoch:)`); the members
    /// it left in Redis for their size are reported.
    func verified(_ read: RevocationLogRange.Read, epoch: RevocationEpoch? = nil, removing: Bool = true) async throws -> [RevocationEvent] {
        try await verifiedEntries(read, epoch: epoch, removing: removing).map(\.event)
    }

    /// `verifiedEntries(_:epoch:)` of a bounded read, reporting what it left unread (and, on the
    /// control plane, `removing` it: see `RevocationLogRange`; never while paging by rank).
    func verifiedEntries(_ read: RevocationLogRange.Read, epoch: RevocationEpoch?, removing: Bool = true) async throws -> [(event: RevocationEvent, member: [UInt8])] {
        if read.skipped > 0 {
            alarm.report(key: keys.revocationLog, "\(read.skipped) member(s) of \(read.skippedBytes) bytes, more than a signed change takes, left unread")
            if removing, removesOversized, let removed = try? await range.removeOversized(at: read.skippedAt), removed > 0 {
                alarm.report(key: keys.revocationLog, "removed \(removed) member(s) longer than a signed change takes")
            }
        }
        return verifiedEntries(read.items, epoch: epoch)
    }

    /// `member score member score …` → the entries that verify, are where their signature says,
    /// and (with `epoch`) belong to that history; each with its member as stored, to remove
    /// exactly that entry.
    func verifiedEntries(_ items: [RedisValue], epoch: RevocationEpoch?) -> [(event: RevocationEvent, member: [UInt8])] {
        var events: [(event: RevocationEvent, member: [UInt8])] = []
        events.reserveCapacity(items.count / 2)
        var index = 0
        while index + 1 < items.count {
            defer { index += 2 }
            guard let bytes = items[index].bytes else { continue }
            let score = items[index + 1].string.flatMap(Double.init)
            do {
                let event = try RevocationEvent.decode(bytes, mac: mac)
                guard score == Double(event.sequence) else {
                    alarm.report(key: keys.revocationLog, "a signed entry for sequence \(event.sequence) was found at score \(score.map { "\($0)" } ?? "?")")
                    continue
                }
                if let epoch, event.epoch != epoch {
                    alarm.report(key: keys.revocationLog, "an entry of epoch \(event.epoch) was found in the log of epoch \(epoch)")
                    continue
                }
                events.append((event, bytes))
            } catch {
                alarm.report(key: keys.revocationLog, "\(error)")
            }
        }
        return events
    }
}
