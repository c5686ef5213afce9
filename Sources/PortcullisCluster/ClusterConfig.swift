import Foundation
import PortcullisConfig
import PortcullisJOSE
import PortcullisRedis

/// The `cluster:` section shared by gateway and control-plane configs.
public struct ClusterConfig: Sendable {
    /// `redis://…`, `rediss://…`, `unix://…`, `redis-sentinel://…` or `rediss-sentinel://…` (see
    /// docs/redis-client.md), as written.
    public var redisURL: String
    /// The parsed URL with `redis_tls` and `sentinel_auth` applied.
    public var redis: RedisConfiguration
    /// Prefix of every Redis key and channel, so several clusters can share one Redis.
    public var keyPrefix: String
    /// HMAC-SHA256 key authenticating key-set records and revocation events (≥ 32 bytes).
    public var secret: [UInt8]
    /// The files holding this section's secrets (`secret: {file: …}` or `secret_file`,
    /// `redis_tls.private_key`).
    public private(set) var secretFiles: [SecretFile] = []
    public var heartbeatInterval: Duration
    /// Beyond this age of confirmed revocation state a node answers authenticated requests with
    /// 503 instead of risking a revoked token (fail closed). nil: serve with stale state forever.
    public var maxStaleness: Duration?
    /// How often a node confirms its revocation sequence with Redis (catches lost messages).
    public var checkInterval: Duration
    /// Lifetime assumed for a revoked `jti` whose `exp` is unknown.
    public var maxTokenLifetime: Duration
    /// Control plane: Redis replicas that must confirm a revocation (`WAIT`) before the admin API
    /// acknowledges it, so a failover to a replica cannot lose it. 0: the primary's word is enough.
    public var requiredReplicas: Int
    /// Control plane: how long a write waits for `requiredReplicas` before failing (the write is
    /// in the primary's log either way; the call reports it as not durable).
    public var replicaTimeout: Duration
    public var rateLimitSyncInterval: Duration
    /// Whether `/readyz` fails while Redis is unreachable (default false: keep serving).
    public var readyRequiresRedis: Bool

    public init(node: ConfigNode, baseDirectory: String) throws {
        var map = try node.mapping()
        let urlNode = try map.required("redis")
        redisURL = try urlNode.nonEmptyString()
        do {
            redis = try RedisConfiguration(url: redisURL)
        } catch {
            throw urlNode.error("\(error)")
        }
        if let tlsNode = map.optional("redis_tls") {
            guard redis.tls != nil else { throw tlsNode.error("redis_tls needs a rediss:// or rediss-sentinel:// URL") }
            var tls = try tlsNode.mapping()
            func path(_ key: String) throws -> String? {
                try tls.optional(key).map { resolve(try $0.nonEmptyString(), against: baseDirectory) }
            }
            let settings = RedisTLS(caFile: try path("ca_file"), certificateFile: try path("certificate"),
                                    privateKeyFile: try path("private_key"), serverName: try tls.optional("server_name")?.nonEmptyString())
            try tls.finish()
            do {
                _ = try settings.makeContext()
            } catch {
                throw tlsNode.error("\(error)")
            }
            redis.tls = settings
            if let key = settings.privateKeyFile { secretFiles.append(SecretFile(key: "cluster.redis_tls.private_key", path: key)) }
        }
        // Under Sentinel a node connects wherever a Sentinel says, so a certificate the CA signed
        // for that address — a Sentinel's own — would pass as the primary's and be sent the
        // node's password. The primary must name what only Redis servers' certificates carry.
        if case .sentinel = redis.endpoint, redis.tls != nil, redis.tls?.serverName == nil {
            throw urlNode.error("a rediss-sentinel:// URL needs redis_tls.server_name: a DNS name that the Redis servers' certificates carry and the Sentinels' do not (a primary a Sentinel names must present it)")
        }
        if let authNode = map.optional("sentinel_auth") {
            guard case .sentinel = redis.endpoint else { throw authNode.error("sentinel_auth needs a redis-sentinel:// URL") }
            var auth = try authNode.mapping()
            redis.sentinelUsername = try auth.optional("username")?.nonEmptyString()
            redis.sentinelPassword = try auth.required("password").string()
            try auth.finish()
        }
        keyPrefix = try map.optional("key_prefix")?.string() ?? "portcullis:"
        let secretNode = map.optional("secret")
        let secretFileNode = map.optional("secret_file")
        switch (secretNode, secretFileNode) {
        case (let node?, nil):
            secret = try Self.decodeSecret(try node.nonEmptyString(), node: node)
            if let path = node.referencedFile { secretFiles.append(SecretFile(key: "cluster.secret", path: path)) }
        case (nil, let node?):
            let path = try node.nonEmptyString()
            let resolved = path.hasPrefix("/") ? path : URL(fileURLWithPath: baseDirectory).appendingPathComponent(path).path
            let text: String
            do {
                text = try ConfigFile.text(atPath: resolved)
            } catch {
                throw node.error("cannot read the cluster secret from \(resolved): \(error.reason)")
            }
            secret = try Self.decodeSecret(text.trimmingCharacters(in: .whitespacesAndNewlines), node: node)
            secretFiles.append(SecretFile(key: "cluster.secret_file", path: resolved))
        case (nil, nil):
            throw map.node.error("cluster needs `secret` or `secret_file` (base64url, at least 32 bytes)")
        case (_?, _?):
            throw map.node.error("give either `secret` or `secret_file`, not both")
        }
        let heartbeatNode = map.optional("heartbeat_interval")
        heartbeatInterval = try heartbeatNode?.duration() ?? .seconds(1)
        // Other nodes refuse a record stating an interval over an hour (`NodeRecord`).
        if let heartbeatNode, heartbeatInterval < .milliseconds(10) || heartbeatInterval > .seconds(3600) {
            throw heartbeatNode.error("heartbeat_interval must be between 10ms and 1h")
        }
        if let node = map.optional("revocation") {
            var revocation = try node.mapping()
            maxStaleness = try revocation.optional("max_staleness")?.duration()
            checkInterval = try revocation.optional("check_interval")?.duration() ?? .seconds(1)
            maxTokenLifetime = try revocation.optional("max_token_lifetime")?.duration() ?? .seconds(24 * 3600)
            requiredReplicas = try revocation.optional("required_replicas")?.int(in: 0...16) ?? 0
            let timeoutNode = revocation.optional("replica_timeout")
            replicaTimeout = try timeoutNode?.duration() ?? .seconds(1)
            // The writer is serial: while a write waits, beats wait behind it, so a long timeout
            // with no replica answering would make gateways stale (and fail closed).
            if let timeoutNode, replicaTimeout < .milliseconds(1) || replicaTimeout > .seconds(5) {
                throw timeoutNode.error("replica_timeout must be between 1ms and 5s")
            }
            try revocation.finish()
        } else {
            maxStaleness = nil
            checkInterval = .seconds(1)
            maxTokenLifetime = .seconds(24 * 3600)
            requiredReplicas = 0
            replicaTimeout = .seconds(1)
        }
        rateLimitSyncInterval = try map.optional("rate_limit_sync_interval")?.duration() ?? .milliseconds(50)
        readyRequiresRedis = try map.optional("ready_requires_redis")?.bool() ?? false
        try map.finish()
        if maxStaleness == .zero { maxStaleness = nil }
    }

    static func decodeSecret(_ text: String, node: ConfigNode) throws -> [UInt8] {
        guard let bytes = Base64URL.decode(text.replacingOccurrences(of: "=", with: "")), bytes.count >= 32 else {
            throw node.error("the cluster secret must be base64url of at least 32 random bytes (e.g. `openssl rand -base64 32 | tr '+/' '-_' | tr -d =`)")
        }
        return bytes
    }
}

private func resolve(_ path: String, against baseDirectory: String) -> String {
    path.hasPrefix("/") ? path : URL(fileURLWithPath: baseDirectory).appendingPathComponent(path).path
}
