import Crypto
import Foundation
import PortcullisCluster
import PortcullisRedis

/// Sign-in attempts counted per username and per client address in Redis, so the limits hold
/// across every control plane. An attempt is counted before its password is checked, in the
/// same step (one Lua script) that refuses it when either count has reached its limit: attempts
/// sent at once are counted one after another, so no more of them reach the KDF than the
/// limits allow (counted after the check, all those in flight would pass it). A refused
/// attempt gets 429 with
/// `Retry-After`, until the window that began with the first counted attempt ends. A successful
/// sign-in takes its attempt back: it clears the user's count and lowers the address's by one,
/// so only failures add up.
struct LoginThrottle: Sendable {
    struct Limits: Sendable, Equatable {
        var perUser: Int
        var perAddress: Int
        var window: Duration
    }

    let client: RedisClient
    let keys: ClusterKeys
    let limits: Limits

    private func counters(username: String, address: String) -> [(key: String, limit: Int)] {
        [(keys.loginFailures("user", username), limits.perUser), (keys.loginFailures("addr", Self.counted(address)), limits.perAddress)]
    }

    private func counter(consoleAddress address: String) -> (key: String, limit: Int) {
        (keys.loginFailures("console-addr", Self.counted(address)), limits.perAddress)
    }

    /// What an address's attempts count under: an IPv6 client by its /64, which one host
    /// commonly holds whole (counted per address, one host could guess with 2^64 fresh counts);
    /// an IPv4 client, or the IPv4 client an IPv6 address stands for
    /// (IPv4-mapped on a dual-stack listener, NAT64, 6to4, Teredo), by its address.
    static func counted(_ address: String) -> String {
        ClientNetwork.key(of: address, ipv6Prefix: 64)
    }

    /// Counts a sign-in attempt for `username` from `address`, or refuses it: how long until one
    /// may be tried again, or nil when this one is counted and may go on.
    func attempt(username: String, address: String) async throws -> Duration? {
        try await attempt(counters(username: username, address: address))
    }

    /// The same for the operator console, which has no usernames: its own count per address
    /// (`console-addr`), so console sign-ins and user sign-ins do not add up.
    func attempt(consoleAddress address: String) async throws -> Duration? {
        try await attempt([counter(consoleAddress: address)])
    }

    /// **Revoke access** presses a user may make: `revocationsPerUser` per `revocationWindow`.
    /// Each may write a grant cut-off to the signed revocation list, which every node holds, so
    /// a user scripting consent and revocation cannot grow it at request rate; no person revokes
    /// access this often.
    static let revocationsPerUser = 30
    static let revocationWindow: Duration = .seconds(3600)

    /// Counts a **Revoke access** by `username`, or refuses it: how long until one may be tried
    /// again, or nil when this one is counted and may go on.
    func attempt(revokingAs username: String) async throws -> Duration? {
        try await attempt([(keys.loginFailures("revoke", username), Self.revocationsPerUser)], window: Self.revocationWindow)
    }

    /// RFC 7009 revocation calls a client may make for one subject (the user, or the client
    /// itself for `client_credentials`) that find a token of its own: a number per
    /// `clientRevocationWindow`, across every control plane. Each may
    /// write a change to the signed revocation list, which every node holds and verifies, and an
    /// audit entry: without a limit one client (a public one needs no secret) could grow the list
    /// and Redis faster than pruning shrinks them, and push operators' entries out of the capped
    /// audit stream.
    static let clientRevocationWindow: Duration = .seconds(60)

    /// Counts an RFC 7009 revocation by `clientID` of a token of `subject`, at most `limit` per
    /// `clientRevocationWindow` (`revocations_per_client`), or refuses it: how long until one may
    /// be made again, or nil when this one is counted and may go on. Counted per subject too, so
    /// that one user holding a token of a public client — which needs no secret — cannot spend
    /// the budget of every other user's logout.
    func attempt(revokingForClient clientID: String, subject: String, limit: Int) async throws -> Duration? {
        let counter = Hex.encode(SHA256.hash(data: Array((clientID + "\n" + subject).utf8)))
        return try await attempt([(keys.loginFailures("oauth-revoke", counter), limit)], window: Self.clientRevocationWindow)
    }

    /// KEYS: counters. ARGV: window ms, then each counter's limit. Returns 0 when every count was
    /// under its limit (each is now one more; a new count's window begins), else the longest
    /// time (ms) left in the window of a count at its limit, counting nothing.
    static let attemptScript = RedisScript("""
    local wait = 0
    for i, key in ipairs(KEYS) do
      local n = tonumber(redis.call('GET', key) or '0') or 0
      if n >= tonumber(ARGV[i + 1]) then
        local left = redis.call('PTTL', key)
        if left < 0 then left = 1000 end
        if left > wait then wait = left end
      end
    end
    if wait > 0 then return wait end
    for _, key in ipairs(KEYS) do
      if redis.call('INCR', key) == 1 then redis.call('PEXPIRE', key, ARGV[1]) end
    end
    return 0
    """)

    private func attempt(_ counters: [(key: String, limit: Int)], window: Duration? = nil) async throws -> Duration? {
        let reply = try await client.evalScript(Self.attemptScript, keys: counters.map { RedisArgument($0.key) },
                                                arguments: [RedisArgument((window ?? limits.window).wholeMilliseconds)] + counters.map { RedisArgument($0.limit) })
        let wait = reply.int ?? 0
        return wait > 0 ? .milliseconds(wait) : nil
    }

    /// KEYS: counter. Lowers a count by one, if it is above zero.
    static let takeBackScript = RedisScript("""
    if (tonumber(redis.call('GET', KEYS[1]) or '0') or 0) > 0 then redis.call('DECR', KEYS[1]) end
    return 0
    """)

    /// `username` signed in: its attempt is taken back.
    func succeeded(username: String, address: String) async throws {
        let counters = counters(username: username, address: address)
        _ = try await client.send("DEL", RedisArgument(counters[0].key))
        _ = try await client.evalScript(Self.takeBackScript, keys: [RedisArgument(counters[1].key)], arguments: [])
    }

    /// A console sign-in succeeded: its attempt is taken back.
    func succeeded(consoleAddress address: String) async throws {
        _ = try await client.evalScript(Self.takeBackScript, keys: [RedisArgument(counter(consoleAddress: address).key)], arguments: [])
    }
}
