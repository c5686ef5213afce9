import Foundation
import Logging
import Metrics
import NIOCore
import PortcullisJOSE
import PortcullisRedis
import Synchronization

/// A gateway node's link to the cluster: keeps revocations and key sets in step with Redis,
/// syncs rate-limit counters, and heartbeats its membership record. The request path only reads
/// `revocations` and `rateLimiter`, which never wait on Redis.
public final class ClusterAgent: Sendable {
    public let rateLimiter: ClusterRateLimiter
    private let follower: RevocationFollower
    private let keySets: KeySetSubscriber
    private let client: RedisClient
    private let subscriber: RedisSubscriber
    private let membership: Membership
    private let config: ClusterConfig
    private let keys: ClusterKeys
    private let identity: NodeIdentity
    private let keyStore: KeySetStore
    private let logger: Logger
    /// The subscription is up.
    private let subscribed = Atomic<Bool>(false)
    /// The last periodic check reached Redis (a silent partition shows here before the
    /// subscription's own health check notices).
    private let lastCheckSucceeded = Atomic<Bool>(false)
    private let controlPlaneAlive = Atomic<Bool>(false)
    private let liveNodeCount = Atomic<Int>(1)

    public init(config: ClusterConfig, identity: NodeIdentity, keyStore: KeySetStore, issuers: [IssuerConfig],
                eventLoopGroup: any EventLoopGroup, logger: Logger) throws {
        self.config = config
        self.identity = identity
        self.keyStore = keyStore
        self.logger = logger
        keys = ClusterKeys(prefix: config.keyPrefix)
        let redis = config.redis
        client = RedisClient(configuration: redis, eventLoopGroup: eventLoopGroup, logger: logger)
        subscriber = RedisSubscriber(configuration: redis, eventLoopGroup: eventLoopGroup, logger: logger)
        let mac = ClusterMAC(secret: config.secret, cluster: config.keyPrefix)
        let alarm = TamperingAlarm(prefix: config.keyPrefix, logger: logger)
        follower = RevocationFollower(client: client, keys: keys, mac: mac, alarm: alarm, node: (identity.id, identity.instance),
                                      maxStaleness: config.maxStaleness, logger: logger) { revoked in
            keyStore.setRevokedKeys(Self.revokedKeysByKid(revoked))
        }
        keySets = KeySetSubscriber(client: client, keys: keys, mac: mac, alarm: alarm, store: keyStore, issuers: issuers, logger: logger)
        rateLimiter = ClusterRateLimiter(client: client, keys: keys, logger: logger)
        membership = Membership(client: client, keys: keys, mac: mac, alarm: alarm)
    }

    /// `issuer|kid` entries (issuer `*` for every issuer) as kid → issuers, keeping each
    /// revocation's issuer scope (an issuer never contains `|`). Split on the byte: a kid that
    /// begins with a combining mark joins the `|` into one `Character`.
    static func revokedKeysByKid(_ scoped: Set<ExactKey>) -> [ExactKey: Set<ExactKey>] {
        var byKid: [ExactKey: Set<ExactKey>] = [:]
        for entry in scoped {
            let bytes = Array(entry.text.utf8)
            guard let bar = bytes.firstIndex(of: UInt8(ascii: "|")) else { continue }
            let issuer = String(decoding: bytes[..<bar], as: UTF8.self), kid = String(decoding: bytes[(bar + 1)...], as: UTF8.self)
            byKid[ExactKey(kid), default: []].insert(ExactKey(issuer))
        }
        return byKid
    }

    /// The revocation set the request path checks.
    public var revocations: RevocationSet { follower.set }
    public var staleness: StalenessClock { follower.staleness }
    /// Revocations loaded at least once (a node is not ready before).
    public var isSynced: Bool { follower.isSynced }
    public var isRedisConnected: Bool { subscribed.load(ordering: .relaxed) && lastCheckSucceeded.load(ordering: .relaxed) }
    /// A control plane heartbeat was seen: it fetches remote JWKS for the cluster.
    public var hasControlPlane: Bool { controlPlaneAlive.load(ordering: .relaxed) }

    /// Runs until the task is cancelled.
    public func run() async {
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask { await self.runSubscription() }
            tasks.addTask { await self.runPeriodicCheck() }
            tasks.addTask { await self.runStalenessGauges() }
            tasks.addTask { await self.runHeartbeat() }
            tasks.addTask { await self.rateLimiter.run(interval: self.config.rateLimitSyncInterval) }
            await tasks.waitForAll()
        }
        await membership.leave(currentRecord(), interval: config.heartbeatInterval)
        await subscriber.close()
        await client.close()
    }

    /// A reload's issuers: the key-set records held are parsed again under their settings
    /// (`KeySetSubscriber.reconfigure`).
    public func reconfigureIssuers(_ issuers: [IssuerConfig]) async {
        await keySets.reconfigure(issuers)
    }

    /// Tells the control plane a token named a kid we do not have (non-blocking).
    public func requestKeyRefetch(issuerName: String, kid: String) {
        Task { await keySets.requestRefetch(issuerName: issuerName, kid: kid) }
    }

    // MARK: Loops

    private func runSubscription() async {
        let stream = subscriber.events(channels: [keys.revocationChannel, keys.keySetChannel], patterns: [], buffer: Self.subscriptionBuffer)
        // Only issuers this node takes from the cluster are offered, each pending once: the
        // queue never holds more than there are, and none is dropped.
        let announced = CoalescingQueue<String>()
        await withDiscardingTaskGroup { group in
            group.addTask { [keySets] in
                for await iss in announced.keys {
                    announced.taken(iss)
                    await keySets.announced(iss)
                }
            }
            for await event in stream {
                switch event {
                case .connected(let reconnect):
                    subscribed.store(true, ordering: .relaxed)
                    // Subscribed first, then read: nothing published from here on can be missed.
                    await resync(reconnect ? "reconnected to Redis; revocations and key sets resynced" : nil)
                case .message(let channel, let payload):
                    if channel == keys.revocationChannel {
                        await follower.receive(payload)
                    } else if channel == keys.keySetChannel, let iss = keySets.announcedIssuer(payload) {
                        announced.offer(iss)
                    }
                case .patternMessage:
                    break
                case .disconnected(let reason):
                    if subscribed.exchange(false, ordering: .relaxed) {
                        logger.warning("lost the Redis subscription; serving from the last synced state", metadata: ["reason": "\(reason)"])
                    }
                }
                // Messages dropped while this reader was behind are read from their keys. A
                // `.connected` may be among them: a resync that succeeds means subscribed.
                if subscriber.takeOverflow(),
                   await resync("the Redis subscription overflowed (a flood of messages); revocations and key sets resynced") {
                    subscribed.store(true, ordering: .relaxed)
                }
            }
            announced.finish()
        }
    }

    /// Messages the subscription holds while this node works through earlier ones; more are
    /// dropped and the node resyncs from Redis's keys instead. Unbounded, a flood a Redis writer
    /// publishes would grow every node's memory and delay live revocations; bounded in number
    /// only, 1 024 messages of 32 MB (Redis's limit for a subscriber) could be held. 128 MiB holds
    /// two of the largest messages a commit publishes (`RevocationSync.maxMessageBytes`).
    static let subscriptionBuffer = RedisEventBuffer(events: 1024, bytes: 128 << 20)

    /// Resyncs revocations and key sets from Redis; whether that succeeded.
    @discardableResult
    private func resync(_ message: String?) async -> Bool {
        do {
            try await follower.subscribed()
            try await keySets.loadAll()
            if let message { logger.info("\(message)") }
            return true
        } catch {
            logger.warning("sync after (re)connect failed; the periodic check retries", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// The staleness gauges, from a timer of their own: recorded after each check, they would
    /// freeze at "fresh" while a check was held up (a flood can hold one up while the node fails
    /// closed), and the alerts built on them would stay quiet.
    private func runStalenessGauges() async {
        let stalenessGauge = Gauge(label: "portcullis_revocation_staleness_seconds")
        let failingClosedGauge = Gauge(label: "portcullis_revocation_failing_closed")
        while !Task.isCancelled {
            stalenessGauge.record(staleness.ageSeconds)
            failingClosedGauge.record(staleness.exceededAge() == nil ? 0 : 1)
            try? await Task.sleep(for: min(config.checkInterval, .seconds(1)))
        }
    }

    private func runPeriodicCheck() async {
        var lastPrune = ContinuousClock.now
        while !Task.isCancelled {
            try? await Task.sleep(for: config.checkInterval)
            do {
                try await follower.periodicCheck()
                lastCheckSucceeded.store(true, ordering: .relaxed)
                rateLimiter.setRedisReachable(true)
            } catch {
                rateLimiter.setRedisReachable(false)
                if lastCheckSucceeded.exchange(false, ordering: .relaxed) {
                    logger.warning("cannot reach Redis; serving from the last synced state", metadata: ["error": "\(error)"])
                }
            }
            if ContinuousClock.now - lastPrune > .seconds(60) {
                await follower.prune(now: Int64(Date().timeIntervalSince1970))
                lastPrune = ContinuousClock.now
            }
        }
    }

    private func runHeartbeat() async {
        let redisGauge = Gauge(label: "portcullis_redis_connected")
        let liveGauge = Gauge(label: "portcullis_ratelimit_live_nodes")
        let entries = (tokens: Gauge(label: "portcullis_revocation_entries", dimensions: [("kind", "jti")]),
                       subjects: Gauge(label: "portcullis_revocation_entries", dimensions: [("kind", "subject")]),
                       clients: Gauge(label: "portcullis_revocation_entries", dimensions: [("kind", "client")]),
                       grants: Gauge(label: "portcullis_revocation_entries", dimensions: [("kind", "grant")]),
                       keys: Gauge(label: "portcullis_revocation_entries", dimensions: [("kind", "key")]),
                       sessions: Gauge(label: "portcullis_revocation_entries", dimensions: [("kind", "session")]))
        while !Task.isCancelled {
            let record = currentRecord()
            do {
                try await membership.heartbeat(record, interval: config.heartbeatInterval)
                let scan = try await membership.liveNodeScan(role: "gateway")
                let live = scan.nodes.filter { !$0.leaving }
                // A partial read may have missed live nodes: the count does not fall on one.
                let count = scan.complete ? max(1, live.count) : max(1, live.count, liveNodeCount.load(ordering: .relaxed))
                liveNodeCount.store(count, ordering: .relaxed)
                rateLimiter.setLiveNodes(count)
                let alive = try await ControlPlanePresence(client: client, keys: keys).isAnnounced()
                controlPlaneAlive.store(alive, ordering: .relaxed)
            } catch {
                logger.debug("heartbeat failed", metadata: ["error": "\(error)"])
            }
            redisGauge.record(isRedisConnected ? 1 : 0)
            liveGauge.record(liveNodeCount.load(ordering: .relaxed))
            let counts = revocations.counts
            entries.tokens.record(counts.tokens)
            entries.subjects.record(counts.subjects)
            entries.clients.record(counts.clients)
            entries.grants.record(counts.grants)
            entries.keys.record(counts.keys)
            entries.sessions.record(counts.sessions)
            try? await Task.sleep(for: config.heartbeatInterval)
        }
    }

    /// This node's record as of now (signed when written).
    private func currentRecord() -> NodeRecord {
        NodeRecord(
            id: identity.id, instance: identity.instance, role: identity.role, address: identity.address, adminAddress: identity.adminAddress,
            version: identity.version, startedAtMillis: identity.startedAtMillis,
            heartbeatAtMillis: Int64(Date().timeIntervalSince1970 * 1000), heartbeatIntervalMillis: config.heartbeatInterval.wholeMilliseconds,
            ack: follower.acknowledgement, keySetVersions: keySetVersions(), rateLimitMode: rateLimiter.mode,
            redisConnected: isRedisConnected, revocationStalenessSeconds: staleness.ageSeconds)
    }

    private func keySetVersions() -> [String: String] {
        keyStore.snapshot().entries.compactMapValues(\.version)
    }
}
