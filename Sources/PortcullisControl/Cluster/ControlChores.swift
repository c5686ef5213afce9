import Foundation
import Logging
import PortcullisCluster
import PortcullisConfig
import PortcullisRedis
import ServiceLifecycle
import Synchronization

/// The control plane's background work, as one service:
/// - the heartbeat: `control:alive` (TTL 3 × heartbeat; gateways then leave remote JWKS fetching
///   to the control plane) and a membership record with role `control`;
/// - the subscription: gateways' refetch requests (`KeyRefetchRequest`), their signed revocation
///   acknowledgements (`NodeAck`: the propagation histogram), and key-set announcements (a peer
///   rotated the signing key);
/// - the revocation head's beat (`RevocationStore.heartbeat`), which is how gateways know their
///   revocation state is fresh, and the control plane's own copy of the revocation list;
/// - scheduled JWKS fetches, signing-key maintenance, revocation pruning (under a lock);
/// - cluster metrics (live nodes, lags, key-set ages), refreshed every second.
final class ControlChores: Service, Sendable {
    private let config: ControlConfig
    private let client: RedisClient
    private let subscriber: RedisSubscriber
    private let keys: ClusterKeys
    private let mac: ClusterMAC
    private let store: RevocationStore
    private let revocationList: RevocationFollower
    private let revocationSubscriber: RedisSubscriber
    private let alarm: TamperingAlarm
    private let view: ClusterView
    private let publisher: KeySetPublisher
    private let fetcher: IssuerKeyFetcher
    private let ring: SigningKeyRing?
    private let metrics: ControlMetrics
    private let logger: Logger
    private let startedAtMillis = Int64(Date().timeIntervalSince1970 * 1000)
    private let instance = String(UInt64.random(in: .min ... .max), radix: 16)

    init(config: ControlConfig, client: RedisClient, subscriber: RedisSubscriber, keys: ClusterKeys, mac: ClusterMAC, store: RevocationStore,
         view: ClusterView, revocationList: RevocationFollower, revocationSubscriber: RedisSubscriber, publisher: KeySetPublisher,
         fetcher: IssuerKeyFetcher, ring: SigningKeyRing?, metrics: ControlMetrics, logger: Logger) {
        self.config = config
        self.client = client
        self.subscriber = subscriber
        self.keys = keys
        self.mac = mac
        self.store = store
        self.revocationList = revocationList
        self.revocationSubscriber = revocationSubscriber
        alarm = TamperingAlarm(prefix: keys.prefix, logger: logger)
        self.view = view
        self.publisher = publisher
        self.fetcher = fetcher
        self.ring = ring
        self.metrics = metrics
        self.logger = logger
    }

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    tasks.addTask { await self.runSubscription() }
                    tasks.addTask {
                        await self.revocationList.run(subscriber: self.revocationSubscriber, keys: self.keys,
                                                      checkInterval: self.config.cluster.checkInterval, logger: self.logger)
                    }
                    tasks.addTask { await self.runHeartbeat() }
                    tasks.addTask { await self.runObserver() }
                    tasks.addTask { await self.runPruner() }
                    tasks.addTask { await self.fetcher.run() }
                    if let ring = self.ring {
                        tasks.addTask { try await self.runSigningKeys(ring) }
                    }
                    // next(), not waitForAll(): a failing chore (keys that cannot be opened) must
                    // end the service at once, which cancels the other loops.
                    while try await tasks.next() != nil {}
                }
            }
        } catch is CancellationError {
            return
        }
    }

    /// Leaves the cluster at shutdown: the membership record goes, and `control:alive` too if
    /// this node set it last (another control plane renews it on its next heartbeat).
    func leave() async {
        await ControlPlanePresence(client: client, keys: keys).withdraw(nodeID: config.nodeID)
        await Membership(client: client, keys: keys, mac: mac, alarm: alarm).remove(id: config.nodeID)
        await revocationSubscriber.close()
    }

    // MARK: Loops

    /// Refetch requests waiting to be handled; beyond it the oldest are dropped.
    static let queuedRefetches = 64

    /// Gateways' refetch requests are handled one at a time from a queue of `queuedRefetches`,
    /// at most one per issuer, and only for issuers this control plane fetches (or signs for).
    /// Any gateway's Redis credential may publish them, and each costs Redis round trips (and
    /// maybe a fetch): started as a task each, a flood of them would grow the control plane's
    /// memory without bound and stall its head beat and revocation writes. A fetch refreshes
    /// the issuer's whole set, so one pending request stands for every kid asked meanwhile; a
    /// flood of requests for one issuer cannot crowd out another's.
    private let pendingRefetches = Mutex<Set<String>>([])

    private func runSubscription() async {
        let (requests, queue) = AsyncStream.makeStream(of: KeyRefetchRequest.self, bufferingPolicy: .bufferingNewest(Self.queuedRefetches))
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await request in requests {
                    self.pendingRefetches.withLock { _ = $0.remove(request.issuer) }
                    if let ring = self.ring, request.issuer == ring.config.issuer {
                        await self.republishBuiltin(ring)
                    } else {
                        await self.fetcher.handleRefetchRequest(kid: request.kid, iss: request.issuer)
                    }
                }
            }
            // The built-in issuer's own announcements reload its ring, once however many came.
            let reloads = CoalescingQueue<String>(limit: 1)
            if let ring {
                group.addTask {
                    for await issuer in reloads.keys {
                        reloads.taken(issuer)
                        try? await ring.reload()
                    }
                }
            }
            await readSubscription(refetches: queue, reloads: reloads)
            queue.finish()
            reloads.finish()
        }
    }

    private func readSubscription(refetches: AsyncStream<KeyRefetchRequest>.Continuation, reloads: CoalescingQueue<String>) async {
        await ControlPlaneFeed(keys: keys, mac: mac, alarm: alarm).run(subscriber) { event in
            switch event {
            case .overflowed:
                if let ring { reloads.offer(ring.config.issuer) }
            case .acknowledged(let ack):
                if let micros = ack.latencyMicros { metrics.propagation.recordNanoseconds(micros * 1000) }
            case .refetchRequested(let request):
                guard ring?.config.issuer == request.issuer || fetcher.issuers.contains(where: { $0.issuer == request.issuer }),
                      pendingRefetches.withLock({ $0.insert(request.issuer).inserted }) else { return }
                if case .dropped(let oldest) = refetches.yield(request) {
                    pendingRefetches.withLock { _ = $0.remove(oldest.issuer) }
                }
            case .keySetAnnounced(let issuer):
                if let ring, issuer == ring.config.issuer { reloads.offer(issuer) }
            }
        }
    }

    /// A gateway lacks a kid of the built-in issuer: republish (throttled cluster-wide to once a second).
    private func republishBuiltin(_ ring: SigningKeyRing) async {
        do {
            let lock = ClusterLock(client: client, key: publisher.fetchLeaseKey(issuer: ring.config.issuer), longest: .seconds(1), alarm: alarm)
            guard try await lock.acquire(ttl: .seconds(1), token: config.nodeID) != nil else { return }
            try await ring.reload()
            try await ring.publish()
        } catch {
            logger.debug("republishing the built-in key set failed", metadata: ["error": "\(error)"])
        }
    }

    private func runHeartbeat() async {
        let interval = config.cluster.heartbeatInterval
        let ttlMillis = max(300, Int(interval.wholeMilliseconds) * 3)
        let membership = Membership(client: client, keys: keys, mac: mac, alarm: alarm)
        let presence = ControlPlanePresence(client: client, keys: keys)
        var wasConnected = true
        var recordFailing = false
        while !Task.isCancelled {
            let record = NodeRecord(
                id: config.nodeID, instance: instance, role: "control", address: config.listen.description, adminAddress: config.adminListen.description,
                version: PortcullisVersion.current, startedAtMillis: startedAtMillis,
                heartbeatAtMillis: Int64(Date().timeIntervalSince1970 * 1000), heartbeatIntervalMillis: interval.wholeMilliseconds, ack: nil,
                keySetVersions: [:], rateLimitMode: "n/a", redisConnected: true, revocationStalenessSeconds: 0)
            do {
                try await presence.announce(nodeID: config.nodeID, ttl: .milliseconds(ttlMillis))
                // The head beat does not wait on the membership record: whatever stops one must
                // not stop the other (gateways fail closed without fresh beats). A record write
                // that fails while the beat succeeds is no sign of Redis being down.
                do {
                    try await membership.heartbeat(record, interval: interval)
                    recordFailing = false
                } catch {
                    if !recordFailing { logger.warning("writing this node's membership record failed", metadata: ["error": "\(error)"]) }
                    recordFailing = true
                }
                try await store.heartbeat()
                metrics.redisConnected.set(1.0)
                if !wasConnected { logger.info("Redis reachable again") }
                wasConnected = true
            } catch {
                metrics.redisConnected.set(0.0)
                if wasConnected { logger.warning("Redis unreachable; the admin API answers 503 for changes until it returns", metadata: ["error": "\(error)"]) }
                wasConnected = false
            }
            try? await Task.sleep(for: interval)
        }
    }

    private func runObserver() async {
        while !Task.isCancelled {
            do {
                let (sequence, _, nodes) = try await view.gateways()
                metrics.revocationSequence.set(Double(sequence))
                metrics.liveNodes.set(Double(nodes.count))
                metrics.nodesInFallback.set(Double(nodes.filter { $0.record.rateLimitMode == "fallback" }.count))
                var lags: [String: (sequences: Int64, seconds: Double)] = [:]
                for node in nodes { lags[node.record.id] = (node.lagSequences, node.lagSeconds ?? 0) }
                metrics.setNodeLags(lags)
                var ages: [String: Double] = [:]
                let now = Int64(Date().timeIntervalSince1970 * 1000)
                var issuers = fetcher.issuers.map { ($0.name, $0.issuer) }
                if let ring { issuers.append((ring.config.name, ring.config.issuer)) }
                for (name, iss) in issuers {
                    if let record = try await publisher.record(issuer: iss) {
                        ages[name] = max(0, Double(now - record.fetchedAtMillis) / 1000)
                    }
                }
                metrics.setKeySetAges(ages)
            } catch {
                logger.debug("cluster observation failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    private func runPruner() async {
        let lock = ClusterLock(client: client, keys: keys, task: "prune", longest: .seconds(55), alarm: alarm)
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(60))
            // The lease is left to expire rather than released, so a peer skips this round.
            guard (try? await lock.acquire(ttl: .seconds(55))) != nil else { continue }
            do {
                // A full batch may leave more due: pruning goes on while the lease lasts, so a
                // log written faster than one batch a minute (RFC 7009 revocations can write
                // many entries a second) still shrinks.
                let started = ContinuousClock.now
                var pruned = 0, batch = RevocationStore.pruneBatch
                while batch >= RevocationStore.pruneBatch, ContinuousClock.now - started < .seconds(45), !Task.isCancelled {
                    batch = try await store.prune()
                    pruned += batch
                }
                if pruned > 0 { logger.info("pruned expired revocations", metadata: ["entries": "\(pruned)"]) }
            } catch {
                logger.warning("revocation pruning failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Starts the signing-key ring (retrying while Redis is unreachable) and maintains it.
    /// Keys that this node cannot open are fatal: signing would otherwise fail forever.
    private func runSigningKeys(_ ring: SigningKeyRing) async throws {
        while !Task.isCancelled {
            do {
                try await ring.start()
                break
            } catch let error as SigningKeyRing.RingError {
                if case .undecryptable = error {
                    logger.critical("authorization server cannot start", metadata: ["error": "\(error)"])
                    throw error
                }
                logger.warning("signing keys not ready; retrying", metadata: ["error": "\(error)"])
            } catch {
                logger.warning("signing keys not ready (Redis?); retrying", metadata: ["error": "\(error)"])
            }
            try await Task.sleep(for: .seconds(1))
        }
        while !Task.isCancelled {
            try await Task.sleep(for: .seconds(2))
            await ring.maintain()
        }
    }
}
