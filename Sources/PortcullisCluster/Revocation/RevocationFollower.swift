import Foundation
import Logging
import Metrics
import PortcullisJOSE
import PortcullisRedis

/// A process's copy of the cluster's revocations, kept in step with the signed log: the set the
/// request path (or introspection) checks, the sync that feeds it, and the freshness clock.
/// Gateways run one inside `ClusterAgent` (and acknowledge what they apply); the control plane
/// runs one on its own so that introspection answers from the same never-forgetting set.
public final class RevocationFollower: Sendable {
    public let set: RevocationSet
    public let staleness: StalenessClock
    let sync: RevocationSync

    /// - Parameters:
    ///   - node: signs acknowledgements as this node id and process instance; nil to acknowledge
    ///     nothing (control plane).
    ///   - onKeysChanged: told the revoked keys (`issuer|kid`, issuer `*` for any) when they change.
    public init(client: RedisClient, keys: ClusterKeys, mac: ClusterMAC, alarm: TamperingAlarm, node: (id: String, instance: String)?, maxStaleness: Duration?,
                logger: Logger, onKeysChanged: @escaping @Sendable (Set<ExactKey>) -> Void = { _ in }) {
        staleness = StalenessClock(limit: maxStaleness)
        set = RevocationSet(staleness: staleness, onKeysChanged: onKeysChanged)
        sync = RevocationSync(keys: keys, mac: mac, set: set, client: client, staleness: staleness, node: node, alarm: alarm, logger: logger)
    }

    /// Revocations loaded at least once.
    public var isSynced: Bool { sync.isSynced }
    public var appliedSequence: Int64 { sync.appliedSequence }
    /// The history this copy follows and the last sequence it applied in it (a writer in the same
    /// process refuses to continue a head behind this).
    public var position: (epoch: RevocationEpoch?, sequence: Int64) { sync.position }
    /// The latest signed acknowledgement (nil on a follower without a node id).
    public var acknowledgement: NodeAck? { sync.acknowledgement }

    /// Waits until this copy has applied `sequence` of the history `epoch` names, or `timeout`
    /// has passed; returns whether it had. A writer in the same process reads its own writes so:
    /// the control plane answers introspection from this copy, which the signed log reaches over
    /// pub/sub a moment after the write returns. Polls every 2 ms (no event loop is held).
    public func waitUntilApplied(_ epoch: RevocationEpoch, sequence: Int64, timeout: Duration = .seconds(1)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while true {
            let applied = position
            if applied.epoch == epoch, applied.sequence >= sequence { return true }
            guard ContinuousClock.now < deadline, (try? await Task.sleep(for: .milliseconds(2))) != nil else { return false }
        }
    }

    /// After the subscription is up (first time or again): sync, or catch up.
    func subscribed() async throws {
        if sync.isSynced {
            try await sync.check()
        } else {
            try await sync.resync(cause: "startup")
        }
    }

    /// A message on the revocation channel.
    func receive(_ payload: [UInt8]) async {
        await sync.receive(payload)
    }

    /// The periodic check (or a first sync that has not succeeded yet).
    func periodicCheck() async throws {
        if sync.isSynced {
            try await sync.check()
        } else {
            try await sync.resync(cause: "retry")
        }
    }

    /// Drops expired jti entries (on the sync's actor, the set's only writer).
    func prune(now: Int64) async {
        await sync.prune(now: now)
    }

    /// Follows the log on its own subscription until the task is cancelled (the control plane's
    /// use; gateways share one subscription for revocations and key sets in `ClusterAgent`).
    public func run(subscriber: RedisSubscriber, keys: ClusterKeys, checkInterval: Duration, logger: Logger) async {
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                for await event in subscriber.events(channels: [keys.revocationChannel], patterns: [], buffer: ClusterAgent.subscriptionBuffer) {
                    if subscriber.takeOverflow() {
                        // Dropped while behind: read from the log instead.
                        try? await self.subscribed()
                    }
                    switch event {
                    case .connected:
                        do { try await self.subscribed() } catch {
                            logger.warning("revocation sync after (re)connect failed; the periodic check retries", metadata: ["error": "\(error)"])
                        }
                    case .message(_, let payload):
                        await self.receive(payload)
                    case .patternMessage, .disconnected:
                        break
                    }
                }
            }
            tasks.addTask {
                var lastPrune = ContinuousClock.now
                while !Task.isCancelled {
                    try? await Task.sleep(for: checkInterval)
                    try? await self.periodicCheck()
                    if ContinuousClock.now - lastPrune > .seconds(60) {
                        await self.prune(now: Int64(Date().timeIntervalSince1970))
                        lastPrune = ContinuousClock.now
                    }
                }
            }
            await tasks.waitForAll()
        }
    }
}
