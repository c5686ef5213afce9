import PortcullisRedis

/// One bounded read of the revocation log, measured inside Redis: members longer than a signed
/// change can be (`RevocationEvent.maxLineBytes`) are counted and left there, and the read stops
/// before the members it returns pass `pageBytes`, or after `maxExamined` members. A Redis
/// writer's large members would otherwise cross the network to every node and be refused only
/// after the transfer: large members at the head's sequence would cost each node their whole
/// size at every check.
///
/// Redis cannot tell a member's length without reading it, so the script copies each member it
/// examines inside Redis (no parsing): what a node receives is bounded, what Redis copies is not.
/// A member over the bound costs Redis a copy at every read that passes it (time in proportion to
/// its size), so the control plane removes such members where its own reads find them
/// (`removeOversized`): no change can be that long, and no node could decode one.
struct RevocationLogRange: Sendable {
    /// What one read found.
    struct Read: Sendable {
        /// `member score member score …`: the members within the bounds, in log order.
        var items: [RedisValue]
        /// Members looked at, returned or skipped for their size.
        var examined: Int
        /// The scores of the first and the last member looked at.
        var firstScore: Double?
        var lastScore: Double?
        /// Whether the read stopped at `pageBytes` before `limit` members.
        var truncated: Bool
        /// Members over `RevocationEvent.maxLineBytes`, left in Redis, and their total size.
        var skipped: Int
        var skippedBytes: Int
        /// Where members were skipped, as `rank score` at the time of the read (at most 16).
        var skippedAt: [String]
    }

    /// The most member bytes one read returns: two changes of the largest honest size (a
    /// sequence holds a signed change, and a failed write's replay beside it) and room to spare,
    /// so that any honest sequence fits in one read.
    static let pageBytes = 2 * RevocationEvent.maxLineBytes + (1 << 20)

    /// The most members one read examines, so that one script call, which examines a member at
    /// a time, holds Redis only briefly; callers page on.
    static let maxExamined = 4_096

    /// The most bytes one read copies inside Redis, skipped members included (at least one
    /// member is always examined).
    static let examinedBytes = 4 * pageBytes

    /// ARGV: mode (`score` or `rank`), start (an exclusive score, or a rank; a negative rank
    /// counts from the end), the highest score (`score` mode), the most members to examine, the
    /// largest member returned, the byte budget for what is returned, and for what is examined.
    /// Returns `{examined, firstScore, lastScore, skipped, skippedBytes, truncated, {member,
    /// score, …}, {"rank score" of a skipped member, …}}`. Only `ZCOUNT` and `ZRANGE` run, by
    /// rank, one member at a time, so no more than one member is copied at once.
    static let script = RedisScript("""
    local key = KEYS[1]
    local first, through
    if ARGV[1] == 'score' then
      first = redis.call('ZCOUNT', key, '-inf', ARGV[2])
      through = tonumber(ARGV[3])
    else
      first = tonumber(ARGV[2])
    end
    local limit, largest, budget, copied = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
    local out, at, used, seen, examined, skipped, skippedBytes, truncated, low, high = {}, {}, 0, 0, 0, 0, 0, 0, '', ''
    for i = 0, limit - 1 do
      local rank = first + i
      if first < 0 and rank >= 0 then break end
      if examined > 0 and seen > copied then
        truncated = 1
        break
      end
      local pair = redis.call('ZRANGE', key, rank, rank, 'WITHSCORES')
      if #pair < 2 then break end
      local member, score = pair[1], pair[2]
      if through then
        local value = tonumber(score)
        if value == nil or value > through then break end
      end
      seen = seen + #member
      if #member > largest then
        skipped = skipped + 1
        skippedBytes = skippedBytes + #member
        if #at < 16 then at[#at + 1] = rank .. ' ' .. score end
      else
        if used + #member > budget and examined > 0 then
          truncated = 1
          break
        end
        used = used + #member
        out[#out + 1] = member
        out[#out + 1] = score
      end
      examined = examined + 1
      if examined == 1 then low = score end
      high = score
    end
    return {examined, low, high, skipped, skippedBytes, truncated, out, at}
    """)

    /// Removes the members at the ranks ARGV[2], ARGV[4], … (highest first, so that no removal
    /// moves another) if each still has the score that follows it and is longer than ARGV[1]: no
    /// signed change is, so nothing a node could apply is lost. One member copied per rank. Run
    /// by the control plane only (it may write the log).
    static let removeScript = RedisScript("""
    local key, largest, removed = KEYS[1], tonumber(ARGV[1]), 0
    for i = #ARGV - 1, 2, -2 do
      local pair = redis.call('ZRANGE', key, ARGV[i], ARGV[i], 'WITHSCORES')
      if #pair == 2 and pair[2] == ARGV[i + 1] and #pair[1] > largest then
        redis.call('ZREM', key, pair[1])
        removed = removed + 1
      end
    end
    return removed
    """)

    let client: RedisClient
    let key: String

    /// Members with `after < score ≤ through`, at most `min(limit, maxExamined)` of them examined.
    func byScore(after: Double, through: Int64, limit: Int64) async throws -> Read {
        try await read(["score", RedisArgument(Self.format(after)), RedisArgument(through), RedisArgument(min(limit, Int64(Self.maxExamined)))])
    }

    /// Members from rank `start` (negative: from the end), at most `min(count, maxExamined)` of them examined.
    func byRank(start: Int, count: Int) async throws -> Read {
        try await read(["rank", RedisArgument(start), "0", RedisArgument(min(count, Self.maxExamined))])
    }

    /// Removes the members a read skipped for their size (`Read.skippedAt`, `rank score`, in
    /// rank order; see `removeScript`); how many.
    func removeOversized(at places: [String]) async throws -> Int {
        let arguments = places.flatMap { $0.split(separator: " ").map { RedisArgument(String($0)) } }
        return Int(try await client.evalScript(Self.removeScript, keys: [RedisArgument(key)],
                                               arguments: [RedisArgument(RevocationEvent.maxLineBytes)] + arguments).int ?? 0)
    }

    /// A score as Redis reads it back exactly (the shortest decimal that round-trips).
    static func format(_ score: Double) -> String {
        score == score.rounded(.towardZero) && abs(score) < 1e15 ? String(Int64(score)) : "\(score)"
    }

    private func read(_ arguments: [RedisArgument]) async throws -> Read {
        let reply = try await client.evalScript(Self.script, keys: [RedisArgument(key)],
                                                arguments: arguments + [RedisArgument(RevocationEvent.maxLineBytes), RedisArgument(Self.pageBytes),
                                                                        RedisArgument(Self.examinedBytes)],
                                                readOnly: true)
        guard let parts = reply.array, parts.count == 8, let examined = parts[0].int, let skipped = parts[3].int,
              let skippedBytes = parts[4].int, let truncated = parts[5].int else {
            throw RedisError.protocolError("the log range script returned \(reply)")
        }
        return Read(items: parts[6].array ?? [], examined: Int(examined),
                    firstScore: parts[1].string.flatMap(Double.init), lastScore: parts[2].string.flatMap(Double.init),
                    truncated: truncated == 1, skipped: Int(skipped), skippedBytes: Int(skippedBytes),
                    skippedAt: (parts[7].array ?? []).compactMap(\.string))
    }
}
