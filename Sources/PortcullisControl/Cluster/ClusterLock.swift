import Foundation
import PortcullisCluster
import PortcullisRedis

/// A lease in Redis so that, of two control planes side by side, one does a chore. Released only
/// by its holder (compare-and-delete), and expires by itself if the holder dies.
///
/// A lease without an expiry, or with one longer than any holder of this lock takes
/// (`longest`), was set by a Redis writer: trusted, it would stop the chore for good and silently —
/// rotations and retirements would answer 409 `busy`, the log would go unpruned, an issuer's keys
/// would never be fetched again. Such a lease is reported and taken over. A writer
/// who sets the lease again and again within `longest` still delays the chore by that much each
/// time; it is not signed.
struct ClusterLock: Sendable {
    let client: RedisClient
    let key: String
    /// The longest lease any holder of this lock takes (every control plane of a cluster runs
    /// the same settings).
    let longest: Duration
    /// Told of a lease taken over (nil: not reported).
    let alarm: TamperingAlarm?

    init(client: RedisClient, keys: ClusterKeys, task: String, longest: Duration, alarm: TamperingAlarm?) {
        self.init(client: client, key: keys.controlLock(task), longest: longest, alarm: alarm)
    }

    init(client: RedisClient, key: String, longest: Duration, alarm: TamperingAlarm?) {
        self.client = client
        self.key = key
        self.longest = longest
        self.alarm = alarm
    }

    /// The lease token, or nil when someone else holds the lock.
    func acquire(ttl: Duration, token: String = UUID().uuidString) async throws -> String? {
        let millis = max(1, ttl.wholeMilliseconds)
        let reply = try await client.evalScript(Self.acquireScript, keys: [RedisArgument(key)],
                                                arguments: [RedisArgument(token), RedisArgument(millis),
                                                            RedisArgument(max(millis, longest.wholeMilliseconds) + 1000)])
        switch reply.int {
        case 1:
            return token
        case 2:
            alarm?.report(key: key, "a lease without an expiry, or longer than any control plane takes, held this chore (not a control plane's): taken over")
            return token
        default:
            return nil
        }
    }

    /// KEYS: the lease. ARGV: token, TTL ms, the longest TTL a holder takes (ms). 1: taken; 2:
    /// taken over from a lease without an expiry or past that longest TTL; 0: held.
    static let acquireScript = RedisScript("""
    if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
    local left = redis.call('PTTL', KEYS[1])
    if left == -1 or left > tonumber(ARGV[3]) then
      redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
      return 2
    end
    return 0
    """)

    static let releaseScript = RedisScript("""
    if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
    return 0
    """)

    func release(_ token: String) async {
        _ = try? await client.evalScript(Self.releaseScript, keys: [RedisArgument(key)], arguments: [RedisArgument(token)])
    }
}
