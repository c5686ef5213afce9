import Foundation
import Logging
import NIOPosix
import PortcullisCluster
import PortcullisJOSE
import PortcullisRedis
import PortcullisTestSupport

/// The processes of the benchmark cluster: redis-server, a test upstream and `nodes` gateway
/// processes (`event_loops: 1`) on loopback, plus the bench's own Redis client playing the control
/// plane (it writes revocations and beats the revocation head).
struct BenchCluster {
    /// What every gateway of the cluster is configured with.
    struct Settings {
        var nodes: Int
        /// `cluster-wide` (key: route) limit on `/limited`, requests per second.
        var limit: Int
        /// `cluster.heartbeat_interval`; nil leaves the gateway's default (1 s).
        var heartbeatInterval: String? = "500ms"
        /// When set, a `per-tenant` policy (key: header `x-tenant`, this limit per second) on
        /// `/tenant`: one active rate-limit key per distinct header value.
        var tenantLimit: Int? = nil
    }

    let settings: Settings
    let redis: RedisServerFixture
    let upstream: TestUpstream
    let gateways: [GatewayProcess]
    let store: RevocationStore
    let client: RedisClient
    let group: MultiThreadedEventLoopGroup
    let validToken: String
    let mac: ClusterMAC
    private let secret: [UInt8]
    private let jwks: String

    static func start(nodes: Int, limit: Int) async throws -> BenchCluster {
        try await start(Settings(nodes: nodes, limit: limit))
    }

    static func start(_ settings: Settings) async throws -> BenchCluster {
        let secret = (0..<32).map { _ in UInt8.random(in: 0...255) }
        let redis = try await RedisServerFixture.start()
        let upstream = try await TestUpstream.start()
        let signer = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "bench")
        let jwks = JSONWriter.serialize(["keys": .array([signer.key.publicJWK(keyID: "bench")])])
        var gateways: [GatewayProcess] = []
        for index in 0..<settings.nodes {
            gateways.append(try await startGateway(index: index, settings: settings, redis: redis, upstream: upstream, secret: secret, jwks: jwks))
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let client = RedisClient(configuration: try RedisConfiguration(url: redis.url), eventLoopGroup: group, logger: Logger(label: "bench"))
        let mac = ClusterMAC(secret: secret, cluster: "portcullis:")
        let store = RevocationStore(client: client, keys: ClusterKeys(prefix: "portcullis:"), mac: mac, maxTokenLifetime: .seconds(3600))
        let now = Int64(Date().timeIntervalSince1970)
        let token = try signer.sign(claims: ["iss": "https://bench.issuer", "aud": "bench", "sub": "bench-user", "jti": "bench-token",
                                             "iat": .integer(now), "exp": .integer(now + 3600)])
        // Let membership settle so rate-limit shares know every node.
        try await Task.sleep(for: .seconds(2))
        // The control plane beats the revocation head; the bench plays it (nodes confirm freshness on beats).
        _ = try await store.heartbeat()
        return BenchCluster(settings: settings, redis: redis, upstream: upstream, gateways: gateways, store: store, client: client, group: group,
                            validToken: token, mac: mac, secret: secret, jwks: jwks)
    }

    /// Starts one more gateway configured like the others (node id `bench-<index + 1>`); the
    /// caller stops it. Returns once it is ready, i.e. has synced every revocation.
    func startGateway(index: Int, readyTimeout: Duration = .seconds(20)) async throws -> GatewayProcess {
        try await Self.startGateway(index: index, settings: settings, redis: redis, upstream: upstream, secret: secret, jwks: jwks,
                                    readyTimeout: readyTimeout)
    }

    private static func startGateway(index: Int, settings: Settings, redis: RedisServerFixture, upstream: TestUpstream, secret: [UInt8],
                                     jwks: String, readyTimeout: Duration = .seconds(20)) async throws -> GatewayProcess {
        let heartbeat = settings.heartbeatInterval.map { "\n  heartbeat_interval: \($0)" } ?? ""
        let tenantPolicy = settings.tenantLimit.map { "\n  - {name: per-tenant, key: \"header:x-tenant\", limit: \($0), window: 1s}" } ?? ""
        return try await GatewayProcess.start(readyTimeout: readyTimeout, extraFiles: ["jwks.json": jwks]) { port, admin, _ in
            let tenantRoute = settings.tenantLimit == nil ? "" :
                "\n  - {name: tenant, path_prefix: /tenant, upstream: {targets: [\(upstream.address)]}, auth: {type: jwt}, rate_limit: per-tenant}"
            return """
                node_id: bench-\(index + 1)
                listen: 127.0.0.1:\(port)
                admin_listen: 127.0.0.1:\(admin)
                event_loops: 1
                access_log: false
                issuers:
                  - {name: bench, issuer: https://bench.issuer, audiences: [bench], algorithms: [ES256], jwks_file: jwks.json}
                rate_limits:
                  - {name: cluster-wide, key: route, limit: \(settings.limit), window: 1s}\(tenantPolicy)
                cluster:
                  redis: \(redis.url)
                  secret: \(Base64URL.encode(secret))\(heartbeat)
                routes:
                  - {name: api, path_prefix: /api, upstream: {targets: [\(upstream.address)]}, auth: {type: jwt}}
                  - {name: limited, path_prefix: /limited, upstream: {targets: [\(upstream.address)]}, auth: {type: jwt}, rate_limit: cluster-wide}\(tenantRoute)
                """
        }
    }

    func revoke(_ jti: String) async throws -> RevocationEvent {
        let now = Int64(Date().timeIntervalSince1970)
        return try await store.write(Revocation(id: "rev_" + UUID().uuidString.prefix(12).lowercased(), operation: .add, kind: .jti, value: jti,
                                                issuer: nil, until: now + 600, createdAtMillis: now * 1000, actor: "bench", reason: nil))
    }

    func stop() async {
        for gateway in gateways { await gateway.stop() }
        await client.close()
        await upstream.stop()
        await redis.stop()
        try? await group.shutdownGracefully()
    }
}
