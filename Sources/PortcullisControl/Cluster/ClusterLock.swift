import Foundation
import PortcullisCluster
import PortcullisRedis

/// A lease in Redis (`SET key token NX PX ttl`) so that, of two control planes side by side,
/// one does a chore. Released only by its holder (compare-and-delete), and expires by itself if
/// the holder dies.
struct ClusterLock: Sendable {
    let client: RedisClient
    let key: String

    init(client: RedisClient, keys: ClusterKeys, task: String) {
        self.client = client
        self.key = keys.controlLock(task)
    }

    /// The lease token, or nil when someone else holds the lock.
    func acquire(ttl: Duration) async throws -> String? {
        let token = UUID().uuidString
        let millis = max(1, ttl.wholeMilliseconds)
        let reply = try await client.send("SET", RedisArgument(key), RedisArgument(token), "NX", "PX", RedisArgument(millis))
        return reply.isNull ? nil : token
    }

    static let releaseScript = RedisScript("""
    if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
    return 0
    """)

    func release(_ token: String) async {
        _ = try? await client.evalScript(Self.releaseScript, keys: [RedisArgument(key)], arguments: [RedisArgument(token)])
    }
}
