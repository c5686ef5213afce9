import PortcullisRedis

/// One bounded read of the revocation log, measured inside Redis: members longer than a signed
/// change can be (`RevocationEvent.maxLineBytes`) are counted and left there, and the read stops
/// before the members it returns pass `pageBytes`. A Redis writer's large members otherwise
/// crossed the network to every node and were refused only after the transfer: 66 members of
/// 8 MiB at the head's sequence cost each node half a gigabyte a check (a bypass review).
///
/// Redis cannot tell a member's length without reading it, so the script copies each member it
/// examines inside Redis (a memory copy, no parsing); what a node receives is bounded.
struct RevocationLogRange: Sendable {
    /// What one read found.
    struct Read: Sendable {
        /// `member score member score …`: the members within the bounds, in log order.
        var items: [RedisValue]
        /// Members looked at, returned or skipped for their size.
        var examined: Int
        /// The score of the last member looked at.
        var lastScore: Double?
        /// Whether the read stopped at `pageBytes` before `limit` members.
        var truncated: Bool
        /// Members over `RevocationEvent.maxLineBytes`, left in Redis, and their total size.
        var skipped: Int
        var skippedBytes: Int
    }

    /// The most member bytes one read returns: two changes of the largest honest size (a
    /// sequence holds a signed change, and a failed write's replay beside it) and room to spare,
    /// so that any honest sequence fits in one read.
    static let pageBytes = 2 * RevocationEvent.maxLineBytes + (1 << 20)

    /// ARGV: mode (`score` or `rank`), start (an exclusive score, or a rank; a negative rank
    /// counts from the end), the highest score (`score` mode), the most members to examine, the
    /// largest member returned, the byte budget. Returns `{examined, lastScore, skipped,
    /// skippedBytes, truncated, {member, score, …}}`. Only `ZCOUNT` and `ZRANGE` run, by rank,
    /// one member at a time, so no more than one member is copied at once.
    static let script = RedisScript("""
    local key = KEYS[1]
    local first, through
    if ARGV[1] == 'score' then
      first = redis.call('ZCOUNT', key, '-inf', ARGV[2])
      through = tonumber(ARGV[3])
    else
      first = tonumber(ARGV[2])
    end
    local limit, largest, budget = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
    local out, used, examined, skipped, skippedBytes, truncated, last = {}, 0, 0, 0, 0, 0, ''
    for i = 0, limit - 1 do
      local rank = first + i
      if first < 0 and rank >= 0 then break end
      local pair = redis.call('ZRANGE', key, rank, rank, 'WITHSCORES')
      if #pair < 2 then break end
      local member, score = pair[1], pair[2]
      if through then
        local value = tonumber(score)
        if value == nil or value > through then break end
      end
      if #member > largest then
        skipped = skipped + 1
        skippedBytes = skippedBytes + #member
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
      last = score
    end
    return {examined, last, skipped, skippedBytes, truncated, out}
    """)

    let client: RedisClient
    let key: String

    /// Members with `after < score ≤ through`, at most `limit` of them examined.
    func byScore(after: Int64, through: Int64, limit: Int64) async throws -> Read {
        try await read(["score", RedisArgument(after), RedisArgument(through), RedisArgument(limit)])
    }

    /// Members from rank `start` (negative: from the end), at most `count` of them examined.
    func byRank(start: Int, count: Int) async throws -> Read {
        try await read(["rank", RedisArgument(start), "0", RedisArgument(count)])
    }

    private func read(_ arguments: [RedisArgument]) async throws -> Read {
        let reply = try await client.evalScript(Self.script, keys: [RedisArgument(key)],
                                                arguments: arguments + [RedisArgument(RevocationEvent.maxLineBytes), RedisArgument(Self.pageBytes)],
                                                readOnly: true)
        guard let parts = reply.array, parts.count == 6, let examined = parts[0].int, let skipped = parts[2].int,
              let skippedBytes = parts[3].int, let truncated = parts[4].int else {
            throw RedisError.protocolError("the log range script returned \(reply)")
        }
        return Read(items: parts[5].array ?? [], examined: Int(examined), lastScore: parts[1].string.flatMap(Double.init),
                    truncated: truncated == 1, skipped: Int(skipped), skippedBytes: Int(skippedBytes))
    }
}
