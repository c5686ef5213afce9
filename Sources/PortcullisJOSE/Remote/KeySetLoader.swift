import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import Metrics
import NIOCore
import Synchronization

/// Keeps every issuer's key set in a ``KeySetStore`` up to date, away from the request path.
///
/// - `jwks_file` issuers: read by ``loadInitial()`` and ``reload()``.
/// - `jwks_uri` / `discovery_url` issuers: fetched by ``loadInitial()`` (a failure is logged, not
///   fatal) and then by ``run()``: every `Cache-Control: max-age` (else `interval`), clamped to
///   `[min_interval, max_interval]`; after a failure, retried every `min_interval`.
/// - An unknown `kid` (``requestRefetch(issuerName:kid:)``) triggers at most one fetch per issuer
///   at a time (single flight), at most one per `unknown_kid_throttle`, and a kid still unknown
///   afterwards is not fetched for again for `negative_cache`.
/// - While an issuer cannot be reached its last good set keeps serving, up to `max_stale` after
///   the last successful fetch (this loader's, or the one it took over from at a reload: see
///   ``carryOver(from:)``); then the set is dropped and its tokens fail with `keys_not_loaded`.
/// - A fetched document with no usable key counts as a failure: it never replaces a good set.
/// - A loader writes for the configuration it was made for (the store's epoch then): once a
///   reload has begun a new epoch, what its fetches bring changes nothing.
///
/// Metrics (swift-metrics): `portcullis_jwks_fetch_total{issuer,outcome}` (outcome: `ok`,
/// `http_error`, `network_error`, `invalid`) and `portcullis_keyset_age_seconds{issuer}` (help
/// texts: `MetricCatalog`).
public final class KeySetLoader: Sendable {
    private struct RemoteState {
        var lastSuccess: ContinuousClock.Instant?
        var nextRefresh: ContinuousClock.Instant
        var inFlight = false
        var lastUnknownKeyIDFetch: ContinuousClock.Instant?
        var negativeKeyIDs: [String: ContinuousClock.Instant] = [:]
    }

    private let issuers: [IssuerConfig]
    private let store: KeySetStore
    private let downloader: JWKSDownloader
    private let logger: Logger
    private let state: Mutex<[String: RemoteState]>
    private let clock = ContinuousClock()
    /// The store's epoch when this loader was made: its writes count only while it lasts, and
    /// its background work ends with it.
    private let epoch: UInt64
    /// Whether issuers without a key source get their `hmac_secrets` from this loader (not in a
    /// cluster, where `KeySetSubscriber` parses them with the cluster's records).
    private let installsConfiguredSecrets: Bool

    /// - Parameters:
    ///   - httpClient: the client for remote key sets (it should follow no redirect, as
    ///     `JWKSDownloader.makeHTTPClient` makes it); nil uses `JWKSDownloader.sharedHTTPClient`.
    ///   - fetchDeadline: how long one download may take, head and body (tests shorten it).
    ///   - installsConfiguredSecrets: whether issuers without a key source get their
    ///     `hmac_secrets` here (false in a cluster).
    public init(issuers: [IssuerConfig], store: KeySetStore, httpClient: HTTPClient? = nil,
                fetchDeadline: Duration = JWKSDownloader.defaultDeadline, installsConfiguredSecrets: Bool = true, logger: Logger) {
        self.installsConfiguredSecrets = installsConfiguredSecrets
        self.issuers = issuers
        self.store = store
        self.downloader = JWKSDownloader(httpClient: httpClient ?? JWKSDownloader.sharedHTTPClient, logger: logger, deadline: fetchDeadline)
        self.logger = logger
        let start = ContinuousClock.now
        var remote: [String: RemoteState] = [:]
        for issuer in issuers where issuer.isRemote { remote[issuer.name] = RemoteState(nextRefresh: start) }
        self.state = Mutex(remote)
        self.epoch = store.epoch
        store.expectIssuers(issuers.map(\.name))
    }

    /// A reload's loader takes over when the loader it replaces last fetched each issuer whose
    /// key settings are unchanged, so that `max_stale` still counts from then (counted afresh, an
    /// issuer unreachable across reloads would keep its last set for good). Call before ``run()``.
    public func carryOver(from previous: KeySetLoader) {
        let taken = previous.state.withLock { states in states.compactMapValues(\.lastSuccess) }
        state.withLock { states in
            for issuer in issuers where issuer.isRemote {
                guard let old = previous.issuers.first(where: { $0.name == issuer.name }), old.hasSameKeySettings(as: issuer),
                      let last = taken[issuer.name] else { continue }
                states[issuer.name]?.lastSuccess = last
            }
        }
    }

    /// Notes that `issuerName`'s set was fetched and installed by someone else (a reload, before
    /// this loader ran): the next fetch is due after `maxAge` (or the refresh interval), not at
    /// once. Its time counts from this call (for `max_stale` too), up to the fetch's deadline
    /// after the fetch itself. Call before ``run()``.
    public func recordFetch(issuerName: String, maxAge: Duration?) {
        guard let issuer = issuers.first(where: { $0.name == issuerName && $0.isRemote }) else { return }
        let now = clock.now
        state.withLock { states in
            states[issuerName]?.lastSuccess = now
            states[issuerName]?.nextRefresh = now + issuer.refresh.refreshDelay(maxAge: maxAge)
        }
    }

    /// Whether a reload has replaced this loader's configuration.
    private var isReplaced: Bool { store.epoch != epoch }

    /// Loads file-based and configured-secret issuers (a failure throws), then tries each remote
    /// issuer once (a failure is logged; ``run()`` keeps retrying).
    public func loadInitial() async throws {
        try await loadLocal()
        await withTaskGroup(of: Void.self) { group in
            for issuer in issuers where issuer.isRemote {
                group.addTask { _ = await self.fetch(issuer, trigger: "initial") }
            }
        }
    }

    /// Re-reads `jwks_file` issuers (e.g. on SIGHUP). On error the previous sets stay.
    public func reload() async throws {
        try await loadLocal()
    }

    private func loadLocal() async throws {
        for issuer in issuers {
            switch issuer.keySource {
            case .jwksFile(let path):
                let document: JWKSDownloader.Document
                do {
                    document = try await downloader.download(issuer)
                } catch {
                    throw JWKError("issuer \(issuer.name): \(path): \(error.message)")
                }
                store.replace(issuerName: issuer.name, keySet: document.keySet, version: document.version, epoch: epoch)
                logger.info("JWKS loaded", metadata: ["issuer": "\(issuer.name)", "keys": "\(document.keySet.count)", "file": "\(path)"])
            case .none where !issuer.hmacKeys.isEmpty && installsConfiguredSecrets:
                let set = JWKSet.configuredKeys(of: issuer)
                store.replace(issuerName: issuer.name, keySet: set, version: "config", epoch: epoch)
            default:
                break
            }
        }
    }

    /// Refreshes remote key sets until the task is cancelled.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            for issuer in issuers where issuer.isRemote {
                group.addTask { await self.refreshLoop(issuer) }
            }
            group.addTask { await self.watchAges() }
        }
    }

    /// Asks for a refetch because a token named `kid`, which `issuerName`'s set lacks. Returns at
    /// once; at most one fetch per issuer runs, subject to the throttle and negative cache.
    public func requestRefetch(issuerName: String, kid: String) {
        guard let issuer = issuers.first(where: { $0.name == issuerName }), issuer.isRemote else { return }
        let now = clock.now
        let start = state.withLock { states -> Bool in
            guard var remote = states[issuerName] else { return false }
            if let seen = remote.negativeKeyIDs[kid], now - seen < issuer.refresh.negativeCache { return false }
            if remote.inFlight { return false }
            if let last = remote.lastUnknownKeyIDFetch, now - last < issuer.refresh.unknownKeyIDThrottle { return false }
            remote.inFlight = true
            remote.lastUnknownKeyIDFetch = now
            states[issuerName] = remote
            return true
        }
        guard start else { return }
        Task {
            let found = await self.fetch(issuer, trigger: "unknown_kid", alreadyClaimed: true)
            let stillUnknown = !found || self.store.keySet(issuerName: issuerName)?.keysByID[kid] == nil
            if stillUnknown {
                self.state.withLock { states in
                    if states[issuerName]?.negativeKeyIDs.count ?? 0 >= 1024 { states[issuerName]?.negativeKeyIDs.removeAll() }
                    states[issuerName]?.negativeKeyIDs[kid] = self.clock.now
                }
            }
        }
    }

    // MARK: Background work

    private func refreshLoop(_ issuer: IssuerConfig) async {
        while !Task.isCancelled, !isReplaced {
            let now = clock.now
            let due = state.withLock { states -> Bool in
                guard var remote = states[issuer.name], !remote.inFlight, remote.nextRefresh <= now else { return false }
                remote.inFlight = true
                states[issuer.name] = remote
                return true
            }
            if due {
                _ = await fetch(issuer, trigger: "scheduled", alreadyClaimed: true)
                continue
            }
            let wait = state.withLock { $0[issuer.name].map { $0.nextRefresh - now } } ?? .seconds(1)
            try? await Task.sleep(for: min(max(wait, .milliseconds(10)), .milliseconds(250)))
        }
    }

    /// Publishes key-set ages and drops sets older than `max_stale`.
    private func watchAges() async {
        while !Task.isCancelled, !isReplaced {
            let now = clock.now
            for issuer in issuers {
                if let loadedAt = store.loadedAt(issuerName: issuer.name) {
                    let age = now - loadedAt
                    Gauge(label: "portcullis_keyset_age_seconds", dimensions: [("issuer", issuer.name)])
                        .record(Double(age.components.seconds) + Double(age.components.attoseconds) / 1e18)
                }
                guard issuer.isRemote else { continue }
                let stale = state.withLock { states -> Bool in
                    guard let last = states[issuer.name]?.lastSuccess else { return false }
                    return now - last > issuer.refresh.maxStale
                }
                if stale, store.keySet(issuerName: issuer.name) != nil, store.remove(issuerName: issuer.name, epoch: epoch) {
                    logger.error("JWKS unreachable for longer than max_stale: keys dropped, tokens now fail with keys_not_loaded",
                                 metadata: ["issuer": "\(issuer.name)"])
                }
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
    }

    /// Fetches and installs `issuer`'s key set. Returns true on success.
    private func fetch(_ issuer: IssuerConfig, trigger: String, alreadyClaimed: Bool = false) async -> Bool {
        if !alreadyClaimed {
            let claimed = state.withLock { states -> Bool in
                guard states[issuer.name]?.inFlight == false else { return false }
                states[issuer.name]?.inFlight = true
                return true
            }
            guard claimed else { return false }
        }
        let outcome: Result<JWKSDownloader.Document, JWKSDownloader.Failure>
        do {
            outcome = .success(try await downloader.download(issuer))
        } catch {
            outcome = .failure(error)
        }
        let now = clock.now
        switch outcome {
        case .success(let fetched):
            guard store.replace(issuerName: issuer.name, keySet: fetched.keySet, version: fetched.version, epoch: epoch) else {
                state.withLock { states in
                    states[issuer.name]?.nextRefresh = now + issuer.refresh.refreshDelay(maxAge: fetched.maxAge)
                    states[issuer.name]?.inFlight = false
                }
                logger.debug("JWKS fetched for a configuration no longer in force; not installed", metadata: ["issuer": "\(issuer.name)"])
                return false
            }
            let delay = issuer.refresh.refreshDelay(maxAge: fetched.maxAge)
            state.withLock { states in
                states[issuer.name]?.lastSuccess = now
                states[issuer.name]?.nextRefresh = now + delay
                states[issuer.name]?.inFlight = false
            }
            JWKSDownloader.countFetch(issuerName: issuer.name, outcome: "ok")
            logger.debug("JWKS fetched", metadata: ["issuer": "\(issuer.name)", "trigger": "\(trigger)",
                                                    "keys": "\(fetched.keySet.count)", "next_in": "\(delay)"])
            return true
        case .failure(let failure):
            state.withLock { states in
                states[issuer.name]?.nextRefresh = now + issuer.refresh.minInterval
                states[issuer.name]?.inFlight = false
            }
            JWKSDownloader.countFetch(issuerName: issuer.name, outcome: failure.outcome)
            logger.warning("JWKS fetch failed; keeping the last good key set", metadata: [
                "issuer": "\(issuer.name)", "trigger": "\(trigger)", "outcome": "\(failure.outcome)", "error": "\(failure.message)",
            ])
            return false
        }
    }
}

extension IssuerConfig {
    /// Whether `other` takes its keys from the same place and parses them the same way (key
    /// source, algorithms, HMAC secrets): a set loaded under one serves the other.
    public func hasSameKeySettings(as other: IssuerConfig) -> Bool {
        keySource == other.keySource && algorithms == other.algorithms && hmacKeys == other.hmacKeys && issuer == other.issuer
    }

    /// Whether a token this issuer admitted under `other` would be admitted under this too, as
    /// far as what it says goes: the same key settings (which include `iss` and the algorithms)
    /// and audiences.
    public func hasSameAdmission(as other: IssuerConfig) -> Bool {
        hasSameKeySettings(as: other) && audiences == other.audiences
    }

    /// True for issuers whose keys are fetched over HTTP.
    public var isRemote: Bool {
        switch keySource {
        case .jwksURI, .discovery: return true
        default: return false
        }
    }
}

