import PortcullisRedis

/// The script that commits revocation changes, and its arguments: the writer of the formats
/// `RevocationEvent` and `RevocationHead` read. In one script, after checking that the head is
/// still the one the writer read (compare-and-set on its digest): each change's log entry in
/// `RevocationEvent`'s wire text (`<seq> <written_us> <json>`, the time taken from Redis `TIME`,
/// which is why the entry is put together here), its prune time in `rev:expiry` (a lift moves the
/// lifted change's there too), its id in `rev:ids`; the new signed head; and the entries
/// published as one message, one per line (`RevocationEvent.lines` splits them).
enum RevocationCommit {
    /// KEYS: head, log, expiry, ids. ARGV: the SHA-1 of the head text expected, the new head's
    /// text, `1` to empty the log and its indexes first (a new epoch), the channel, the number of
    /// changes, then five per change (`changeArguments`). Returns `{1, written_us}`; `{0, ''}`
    /// when the head is not the one expected (nothing written); `{2, key}` when a key holds
    /// another type (nothing written).
    static let script = RedisScript("""
    local types = {'string', 'zset', 'zset', 'hash'}
    for i = 1, 4 do
      local t = redis.call('TYPE', KEYS[i]).ok
      if t ~= 'none' and t ~= types[i] then return {2, KEYS[i]} end
    end
    local cur = redis.call('GET', KEYS[1])
    if redis.sha1hex(cur or '') ~= ARGV[1] then return {0, ''} end
    if ARGV[3] == '1' then redis.call('DEL', KEYS[2], KEYS[3], KEYS[4]) end
    local t = redis.call('TIME')
    local us = t[1] .. string.format('%06d', tonumber(t[2]))
    local n = tonumber(ARGV[5])
    local lines = {}
    for i = 0, n - 1 do
      local b = 6 + i * 5
      local seq = ARGV[b]
      local entry = seq .. ' ' .. us .. ' ' .. ARGV[b + 1]
      redis.call('ZADD', KEYS[2], seq, entry)
      redis.call('ZADD', KEYS[3], ARGV[b + 2], seq)
      redis.call('HSET', KEYS[4], ARGV[b + 3], seq)
      if ARGV[b + 4] ~= '' then
        local lifted = redis.call('HGET', KEYS[4], ARGV[b + 4])
        if lifted then redis.call('ZADD', KEYS[3], ARGV[b + 2], lifted) end
      end
      lines[#lines + 1] = entry
    end
    redis.call('SET', KEYS[1], ARGV[2])
    if n > 0 then redis.call('PUBLISH', ARGV[4], table.concat(lines, '\\n')) end
    return {1, us}
    """)

    /// The script's arguments before the changes'.
    static func arguments(expectedDigest: String, next: RevocationHead, reset: Bool, channel: String, count: Int) -> [RedisArgument] {
        [RedisArgument(expectedDigest), RedisArgument(next.wireText), reset ? "1" : "0", RedisArgument(channel), RedisArgument(count)]
    }

    /// One change's five arguments: its sequence, its JSON (`RevocationEvent.json`), its prune
    /// time's score, its id, and the id of the change it lifts ("" for none).
    static func changeArguments(_ event: RevocationEvent, pruneAt: String) -> [RedisArgument] {
        [RedisArgument(event.sequence), RedisArgument(event.json), RedisArgument(pruneAt),
         RedisArgument(event.revocation.id), RedisArgument(event.revocation.lifts ?? "")]
    }
}
