import Foundation
import Logging
import NIOPosix
import PortcullisCluster
import PortcullisJOSE
import PortcullisRedis
import PortcullisTestSupport
import Testing

/// A small cluster for tests: one real redis-server, a test upstream, N real gateway processes
/// sharing a cluster secret, and a Redis client for writing revocations and key sets the way the
/// control plane does.
final class TestCluster {
    static let secret = Array(repeating: UInt8(7), count: 32)
    static let issuer = "https://issuer.cluster.test"
    static let audience = "api://cluster"

    let redis: RedisServerFixture
    let upstream: TestUpstream
    let group: MultiThreadedEventLoopGroup
    let client: RedisClient
    let keys = ClusterKeys(prefix: "portcullis:")
    let mac = ClusterMAC(secret: TestCluster.secret, cluster: "portcullis:")
    lazy var alarm = TamperingAlarm(prefix: keys.prefix, logger: Logger(label: "test"))
    let store: RevocationStore
    let signer: JWTSigner
    var gateways: [GatewayProcess] = []
    /// The control plane's heartbeat on the revocation head, when a test runs it.
    var beater: Task<Void, Never>?
    let issuerKeySource: String
    let rateLimit: Int?
    /// More entries for `routes:`, appended to every gateway's config (YAML, indented as a list item).
    var extraRoutes = ""
    /// Top-level gateway settings added to the config (`limits: {…}`).
    var extraSettings = ""
    /// The issuer's `leeway_seconds`, when a test needs other than the default.
    var issuerLeeway: Int?

    /// - Parameters:
    ///   - clusterKeys: the issuer's keys come from the cluster (KeySetPublisher) instead of a file.
    /// - Parameter rateLimit: adds a cluster-wide policy (this many per second, key `route`) on `/limited`.
    init(redisPersistence: Bool = false, clusterKeys: Bool = false, rateLimit: Int? = nil) async throws {
        redis = try await RedisServerFixture.start(persistence: redisPersistence)
        upstream = try await TestUpstream.start()
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        client = RedisClient(configuration: try RedisConfiguration(url: redis.url), eventLoopGroup: group, logger: Logger(label: "test"))
        store = RevocationStore(client: client, keys: keys, mac: mac, maxTokenLifetime: .seconds(3600))
        signer = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "k1")
        issuerKeySource = clusterKeys ? "" : "    jwks_file: jwks.json\n"
        self.rateLimit = rateLimit
    }

    var jwks: String { Self.jwks([signer]) }

    /// A JWKS document of the signers' public keys.
    static func jwks(_ signers: [JWTSigner]) -> String {
        JSONWriter.serialize(["keys": .array(signers.map { $0.key.publicJWK(keyID: $0.keyID) })])
    }

    func gatewayConfig(port: Int, adminPort: Int, nodeID: String, checkInterval: String = "200ms", staleness: String? = nil,
                       readyRequiresRedis: Bool = false) -> String {
        """
        node_id: \(nodeID)
        listen: 127.0.0.1:\(port)
        admin_listen: 127.0.0.1:\(adminPort)
        event_loops: 1
        access_log: false
        \(extraSettings)
        issuers:
          - name: main
            issuer: \(Self.issuer)
            audiences: [\(Self.audience)]
            algorithms: [ES256]
        \(issuerLeeway.map { "    leeway_seconds: \($0)\n" } ?? "")\(issuerKeySource)
        cluster:
          redis: \(redis.url)
          secret: \(Base64URL.encode(Self.secret))
          heartbeat_interval: 300ms
          rate_limit_sync_interval: 50ms
          ready_requires_redis: \(readyRequiresRedis)
          revocation:
            check_interval: \(checkInterval)
        \(staleness.map { "    max_staleness: \($0)" } ?? "")
        rate_limits:
          - {name: cluster-wide, key: route, limit: \(rateLimit ?? 1), window: 1s}
        routes:
          - name: api
            path_prefix: /
            upstream: {targets: [\(upstream.address)]}
            auth: {type: jwt}
          - name: limited
            path_prefix: /limited
            upstream: {targets: [\(upstream.address)]}
            auth: {type: jwt}
            rate_limit: cluster-wide
        \(extraRoutes)
        """
    }

    /// Creates the revocation history's first epoch, as a control plane does on its first heartbeat.
    func createHistory() async throws {
        try await store.heartbeat()
    }

    /// Beats the revocation head every 200 ms, as a running control plane does (nodes count
    /// their state as fresh only after a new beat).
    func startBeating() {
        let store = self.store
        beater = Task {
            while !Task.isCancelled {
                _ = try? await store.heartbeat()
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    @discardableResult
    func startGateway(id: String, waitForReady: Bool = true, staleness: String? = nil, readyRequiresRedis: Bool = false,
                      checkInterval: String = "200ms") async throws -> GatewayProcess {
        let jwks = self.jwks
        let gateway = try await GatewayProcess.start(waitForReady: waitForReady, extraFiles: ["jwks.json": jwks]) { port, admin, _ in
            self.gatewayConfig(port: port, adminPort: admin, nodeID: id, checkInterval: checkInterval, staleness: staleness,
                               readyRequiresRedis: readyRequiresRedis)
        }
        gateways.append(gateway)
        return gateway
    }

    func token(sub: String = "user", jti: String = UUID().uuidString, clientID: String = "app", iat: Int64? = nil, signer: JWTSigner? = nil) throws -> String {
        let now = Int64(Date().timeIntervalSince1970)
        return try (signer ?? self.signer).sign(claims: [
            "iss": .string(Self.issuer), "aud": .string(Self.audience), "sub": .string(sub), "jti": .string(jti),
            "client_id": .string(clientID), "iat": .integer(iat ?? now - 5), "exp": .integer(now + 600),
        ])
    }

    func revoke(_ kind: Revocation.Kind, _ value: String, until: Int64? = nil, issuer: String? = nil) async throws -> RevocationEvent {
        try await Self.revoke(store: store, kind, value, until: until, issuer: issuer)
    }

    /// Lifts the cut-off `event` set.
    func lift(_ event: RevocationEvent) async throws -> RevocationEvent {
        let now = Int64(Date().timeIntervalSince1970)
        let original = event.revocation
        return try await store.write(Revocation(
            id: "rev_" + UUID().uuidString.prefix(12).lowercased(), operation: .delete, kind: original.kind, value: original.value,
            issuer: original.issuer, until: now, createdAtMillis: now * 1000, actor: "test", reason: nil, lifts: original.id))
    }

    static func revoke(store: RevocationStore, _ kind: Revocation.Kind, _ value: String, until: Int64? = nil,
                       issuer: String? = nil) async throws -> RevocationEvent {
        let now = Int64(Date().timeIntervalSince1970)
        return try await store.write(Revocation(
            id: "rev_" + UUID().uuidString.prefix(12).lowercased(), operation: .add, kind: kind, value: value, issuer: issuer,
            until: until ?? (kind == .jti ? now + 600 : now + 1), createdAtMillis: now * 1000, actor: "test", reason: nil))
    }

    /// The status every gateway gives `token` right now.
    func statuses(_ token: String) throws -> [Int] {
        try gateways.map { try $0.request("GET", "/x", headers: [("Authorization", "Bearer \(token)")]).status }
    }

    func appliedSequences() async throws -> [String: Int64] {
        let live = try await Membership(client: client, keys: keys, mac: mac, alarm: alarm).liveNodes()
        return Dictionary(uniqueKeysWithValues: live.map { ($0.id, $0.appliedSequence) })
    }

    func shutdown() async {
        beater?.cancel()
        await beater?.value
        for gateway in gateways { await gateway.stop() }
        await client.close()
        await upstream.stop()
        await redis.stop()
        try? await group.shutdownGracefully()
    }
}

/// Runs `body` against a fresh cluster and always shuts it down.
func withCluster(redisPersistence: Bool = false, clusterKeys: Bool = false, rateLimit: Int? = nil,
                 _ body: (TestCluster) async throws -> Void) async throws {
    let cluster = try await TestCluster(redisPersistence: redisPersistence, clusterKeys: clusterKeys, rateLimit: rateLimit)
    try await cluster.createHistory()
    try await withCleanup(cluster, { await $0.shutdown() }, body)
}

/// Polls `condition` until it holds; records an issue naming `what` if it never does.
@discardableResult
func eventually(timeout: Duration = .seconds(5), _ what: String, _ condition: () async throws -> Bool) async throws -> Bool {
    let held = try await Poll.until(timeout: timeout, condition)
    if !held { Issue.record("not within \(timeout): \(what)") }
    return held
}
