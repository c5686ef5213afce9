import Foundation
import Logging
import PortcullisCluster
import PortcullisJOSE
import PortcullisRedis

/// The cluster's one fetcher of external issuers' key sets: fetches each issuer's JWKS on its
/// schedule, on an admin request, and when a gateway reports an unknown `kid`, and publishes it
/// through `KeySetPublisher` (gateways apply records whose MAC verifies).
///
/// With two control planes side by side, a `SET NX PX` lock per issuer (`keys:lock:<iss>`)
/// keeps scheduled and unknown-kid fetches to one per interval cluster-wide (an unknown-kid
/// request inside the window is served when it ends); within a process, fetches of one issuer
/// are single-flight. A kid still unknown after a refetch goes into a
/// negative cache in Redis (`keys:missing:<iss>:<kid>`) for the issuer's `negative_cache` time.
actor IssuerKeyFetcher {
    /// What this process knows about an issuer's fetches.
    struct Status: Sendable {
        var lastAttemptMillis: Int64?
        var lastOutcome: String?
        var lastError: String?
        var lastSuccessMillis: Int64?
        var errorsTotal = 0
        var consecutiveErrors = 0
        var fetchesTotal = 0
    }

    enum Result: Sendable {
        case published(KeySetRecord)
        case failed(JWKSDownloader.Failure)
        /// Another fetch (here or on another control plane) ran within the throttle window.
        case throttled
    }

    let issuers: [IssuerConfig]
    private let downloader: JWKSDownloader
    private let publisher: KeySetPublisher
    private let client: RedisClient
    private let nodeID: String
    private let metrics: ControlMetrics
    private let logger: Logger
    private let alarm: TamperingAlarm
    private var status: [String: Status] = [:]
    private var inFlight: [String: Task<Result, Never>] = [:]
    private var nextRefresh: [String: ContinuousClock.Instant] = [:]
    /// `Cache-Control: max-age` of each issuer's last successful fetch.
    private var lastMaxAge: [String: Duration?] = [:]

    init(issuers: [IssuerConfig], downloader: JWKSDownloader, publisher: KeySetPublisher, client: RedisClient,
         nodeID: String, metrics: ControlMetrics, alarm: TamperingAlarm, logger: Logger) {
        self.alarm = alarm
        self.issuers = issuers
        self.downloader = downloader
        self.publisher = publisher
        self.client = client
        self.nodeID = nodeID
        self.metrics = metrics
        self.logger = logger
    }

    func statusSnapshot() -> [String: Status] { status }

    /// Scheduled refreshes until cancelled: each issuer after its `Cache-Control: max-age` (else
    /// `jwks_refresh.interval`, clamped), or `min_interval` after a failure.
    func run() async {
        for issuer in issuers { nextRefresh[issuer.name] = .now }
        while !Task.isCancelled {
            let now = ContinuousClock.now
            for issuer in issuers where (nextRefresh[issuer.name] ?? now) <= now {
                nextRefresh[issuer.name] = now + issuer.refresh.minInterval
                let result = await refresh(issuer, trigger: "scheduled", lock: issuer.refresh.minInterval)
                switch result {
                case .published:
                    nextRefresh[issuer.name] = ContinuousClock.now + issuer.refresh.refreshDelay(maxAge: lastMaxAge[issuer.name] ?? nil)
                case .throttled, .failed:
                    nextRefresh[issuer.name] = ContinuousClock.now + issuer.refresh.minInterval
                }
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
    }

    /// An admin-forced refresh: bypasses the cluster throttle, still single-flight.
    func forceRefresh(issuerName: String) async -> Result? {
        guard let issuer = issuers.first(where: { $0.name == issuerName }) else { return nil }
        return await refresh(issuer, trigger: "admin", lock: nil)
    }

    /// A gateway met `kid`, which `iss`'s published set lacks (message `"<kid> <iss>"`).
    func handleRefetchRequest(kid: String, iss: String) async {
        guard let issuer = issuers.first(where: { $0.issuer == iss }) else { return }
        do {
            if try await publisher.isKnownMissing(kid: kid, issuer: iss) { return }
        } catch {
            return
        }
        let result = await refresh(issuer, trigger: "unknown_kid", lock: issuer.refresh.unknownKeyIDThrottle)
        let found: Bool
        switch result {
        case .published(let record):
            found = Self.keyIDs(inJWKS: record.jwks).contains(kid)
        case .failed:
            found = false
        case .throttled:
            // Another fetch ran moments ago, maybe before the issuer published this kid: fetch
            // again as soon as the throttle window ends instead of dropping the request (the
            // node that asked will not ask again for a while).
            let remaining = (try? await publisher.fetchLeaseRemaining(issuer: issuer.issuer)) ?? .zero
            let due = ContinuousClock.now + remaining + .milliseconds(10)
            nextRefresh[issuer.name] = min(nextRefresh[issuer.name] ?? due, due)
            return
        }
        if !found {
            try? await publisher.rememberMissing(kid: kid, issuer: iss, for: issuer.refresh.negativeCache)
            logger.info("unknown kid not in the issuer's JWKS; not refetching for it again for a while",
                        metadata: ["issuer": "\(issuer.name)", "kid": "\(kid)"])
        }
    }

    /// Fetches and publishes, single-flight per issuer. With `lock`, first takes the cluster-wide
    /// throttle lock for that long and skips if another fetch holds it.
    private func refresh(_ issuer: IssuerConfig, trigger: String, lock: Duration?) async -> Result {
        if let running = inFlight[issuer.name] { return await running.value }
        let task = Task { await self.fetchAndPublish(issuer, trigger: trigger, lock: lock) }
        inFlight[issuer.name] = task
        let result = await task.value
        inFlight[issuer.name] = nil
        return result
    }

    private func fetchAndPublish(_ issuer: IssuerConfig, trigger: String, lock: Duration?) async -> Result {
        if let lock {
            do {
                let lease = ClusterLock(client: client, key: publisher.fetchLeaseKey(issuer: issuer.issuer),
                                        longest: max(issuer.refresh.minInterval, issuer.refresh.unknownKeyIDThrottle), alarm: alarm)
                if try await lease.acquire(ttl: lock, token: nodeID) == nil { return .throttled }
            } catch {
                logger.debug("cannot take the fetch lock; Redis unreachable", metadata: ["issuer": "\(issuer.name)", "error": "\(error)"])
                return .throttled
            }
        }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        status[issuer.name, default: Status()].lastAttemptMillis = now
        status[issuer.name, default: Status()].fetchesTotal += 1
        do {
            let document = try await downloader.download(issuer)
            lastMaxAge[issuer.name] = document.maxAge
            let record = try await publisher.publish(issuer: issuer.issuer, jwks: document.text)
            status[issuer.name]?.lastOutcome = "ok"
            status[issuer.name]?.lastError = nil
            status[issuer.name]?.lastSuccessMillis = now
            status[issuer.name]?.consecutiveErrors = 0
            metrics.jwksFetch(issuer: issuer.name, outcome: "ok")
            logger.debug("JWKS fetched and published", metadata: [
                "issuer": "\(issuer.name)", "trigger": "\(trigger)", "version": "\(record.version)", "keys": "\(document.keySet.count)",
            ])
            return .published(record)
        } catch let failure as JWKSDownloader.Failure {
            return failed(issuer, failure, trigger: trigger)
        } catch {
            return failed(issuer, JWKSDownloader.Failure(outcome: "publish_error", message: "publishing to Redis: \(error)"), trigger: trigger)
        }
    }

    private func failed(_ issuer: IssuerConfig, _ failure: JWKSDownloader.Failure, trigger: String) -> Result {
        status[issuer.name]?.lastOutcome = failure.outcome
        status[issuer.name]?.lastError = failure.message
        status[issuer.name]?.errorsTotal += 1
        status[issuer.name]?.consecutiveErrors += 1
        metrics.jwksFetch(issuer: issuer.name, outcome: failure.outcome)
        logger.warning("JWKS fetch failed; the cluster keeps the last published key set", metadata: [
            "issuer": "\(issuer.name)", "trigger": "\(trigger)", "outcome": "\(failure.outcome)", "error": "\(failure.message)",
        ])
        return .failed(failure)
    }

    /// The `kid`s of a JWKS document.
    static func keyIDs(inJWKS text: String) -> [String] {
        guard let document = try? JOSEJSONReader.parse(Array(text.utf8)) else { return [] }
        return (document["keys"]?.arrayValue ?? []).compactMap { $0["kid"]?.stringValue }
    }
}
