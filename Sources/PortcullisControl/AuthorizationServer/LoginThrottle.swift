import Foundation
import PortcullisCluster
import PortcullisRedis

/// Failed sign-ins counted per username and per client address in Redis, so the limits hold
/// across every control plane. Once either count reaches its limit within the window, sign-in
/// attempts for that user or from that address are refused (429, `Retry-After`) without running
/// the KDF, until the window that began with the first failure ends. A successful sign-in clears
/// the user's count.
struct LoginThrottle: Sendable {
    struct Limits: Sendable, Equatable {
        var perUser: Int
        var perAddress: Int
        var window: Duration
    }

    let client: RedisClient
    let keys: ClusterKeys
    let limits: Limits

    /// How long until a sign-in may be tried again, or nil when it may be tried now.
    func blocked(username: String, address: String) async throws -> Duration? {
        try await blocked([(keys.loginFailures("user", username), limits.perUser), (keys.loginFailures("addr", address), limits.perAddress)])
    }

    /// The same for the operator console, which has no usernames: its own count per address
    /// (`console-addr`), so failed console sign-ins and failed user sign-ins do not add up.
    func blocked(consoleAddress address: String) async throws -> Duration? {
        try await blocked([(keys.loginFailures("console-addr", address), limits.perAddress)])
    }

    private func blocked(_ counters: [(key: String, limit: Int)]) async throws -> Duration? {
        let replies = try await client.pipeline(counters.flatMap { [["GET", RedisArgument($0.key)], ["PTTL", RedisArgument($0.key)]] })
        let values = try replies.map { try $0.get() }
        var wait: Int64 = 0
        for (index, counter) in counters.enumerated() where (values[2 * index].string.flatMap { Int($0) } ?? 0) >= counter.limit {
            wait = max(wait, values[2 * index + 1].int ?? 1000)
        }
        return wait > 0 ? .milliseconds(wait) : nil
    }

    /// KEYS: counter. ARGV: window ms. A fixed window from the first failure.
    static let failureScript = RedisScript("""
    if redis.call('GET', KEYS[1]) then
      local n = tonumber(redis.call('GET', KEYS[1])) + 1
      redis.call('SET', KEYS[1], n, 'KEEPTTL')
      return n
    end
    redis.call('SET', KEYS[1], 1, 'PX', ARGV[1])
    return 1
    """)

    func recordFailure(username: String, address: String) async throws {
        for key in [keys.loginFailures("user", username), keys.loginFailures("addr", address)] {
            _ = try await client.evalScript(Self.failureScript, keys: [RedisArgument(key)], arguments: [RedisArgument(limits.window.wholeMilliseconds)])
        }
    }

    func recordFailure(consoleAddress address: String) async throws {
        _ = try await client.evalScript(Self.failureScript, keys: [RedisArgument(keys.loginFailures("console-addr", address))],
                                        arguments: [RedisArgument(limits.window.wholeMilliseconds)])
    }

    func recordSuccess(username: String) async throws {
        _ = try await client.send("DEL", RedisArgument(keys.loginFailures("user", username)))
    }
}
