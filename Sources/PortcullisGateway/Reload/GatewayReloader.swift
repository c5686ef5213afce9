import AsyncHTTPClient
import Logging
import PortcullisCluster
import PortcullisJOSE
import PortcullisObservability
import Synchronization

/// Puts configurations in force, at start and on SIGHUP, all or nothing: a new file is first
/// built whole (``PreparedConfiguration``: parsed, start-only settings unchanged, certificates,
/// key files and routes loaded); only then are its key sets installed and the route table (with
/// its authenticator), the listener's certificate and trusted proxies, and the key-set loader
/// swapped in — steps that cannot fail. A reload that fails anywhere before changes nothing and
/// is logged with the file, line and key, and counted (``ConfigReloads``).
final class GatewayReloader: Sendable {
    private let running: Mutex<GatewayConfig>
    private let context: GatewayContext
    private let server: GatewayServer
    private let keys: KeySetStore
    private let cache: VerifiedTokenCache?
    private let agent: ClusterAgent?
    private let httpClient: HTTPClient
    private let metrics: GatewayMetrics
    private let loaders = KeySetLoaderRunner()
    private let reloads: ConfigReloads
    private let logger: Logger

    init(running: GatewayConfig, context: GatewayContext, server: GatewayServer, keys: KeySetStore, cache: VerifiedTokenCache?,
         agent: ClusterAgent?, httpClient: HTTPClient, metrics: GatewayMetrics, reloads: ConfigReloads, logger: Logger) {
        self.running = Mutex(running)
        self.context = context
        self.server = server
        self.keys = keys
        self.cache = cache
        self.agent = agent
        self.httpClient = httpClient
        self.metrics = metrics
        self.reloads = reloads
        self.logger = logger
    }

    /// The authenticator and key-set loader for `issuers`, over the node's key store. Building a
    /// verifier registers its issuers for readiness, so this runs only for a configuration
    /// that goes in force.
    static func authentication(issuers: [IssuerConfig], keys: KeySetStore, cache: VerifiedTokenCache?, agent: ClusterAgent?,
                               httpClient: HTTPClient, logger: Logger) -> (Authenticator?, KeySetLoader) {
        // In a cluster, an issuer without a key source takes its keys from the cluster's records,
        // its HMAC secrets with them (`KeySetSubscriber`), not from the loader.
        let loader = KeySetLoader(issuers: issuers, store: keys, httpClient: httpClient, installsConfiguredSecrets: agent == nil, logger: logger)
        guard !issuers.isEmpty else { return (nil, loader) }
        let verifier = JWTVerifier(issuers: issuers, keys: keys, cache: cache, onUnknownKeyID: { issuer, kid in
            // With a live control plane, it is the cluster's one fetcher; otherwise fetch ourselves.
            if let agent, agent.hasControlPlane {
                agent.requestKeyRefetch(issuerName: issuer, kid: kid)
            } else {
                loader.requestRefetch(issuerName: issuer, kid: kid)
            }
        })
        return (Authenticator(verifier: verifier, revocation: agent?.revocations), loader)
    }

    /// Starts the refresh loop of the key-set loader built at start.
    func start(loader: KeySetLoader) {
        loaders.start(loader)
    }

    /// SIGHUP: reads the file the node was started with and puts it in force whole, or not at all.
    func reload() async {
        let current = running.withLock { $0 }
        let prepared: PreparedConfiguration
        do {
            var config = try GatewayConfig.load(file: current.file)
            // `--node-id` and the other overrides stay; the file may not change them (start-only).
            config.configuredNodeID = current.configuredNodeID
            config.listen = current.listen
            config.adminListen = current.adminListen
            prepared = try await PreparedConfiguration.build(config, running: current, offerHTTP2: server.offersHTTP2,
                                                             metrics: metrics, httpClient: httpClient)
        } catch {
            reloads.failed(file: current.file, error: error)
            return
        }
        let toldOfTrust = await commit(prepared, running: current)
        reloads.succeeded(file: current.file, summary: [
            "routes": "\(prepared.config.routes.count)", "issuers": "\(prepared.config.issuers.count)",
            "connections_closed_for_client_trust": "\(toldOfTrust)",
        ])
    }

    /// Puts a prepared configuration in force; nothing here can fail. Returns how many open
    /// connections a new client trust closes (`GatewayServer.replaceListener`).
    private func commit(_ prepared: PreparedConfiguration, running current: GatewayConfig) async -> Int {
        // From here on, what the replaced configuration's loader fetches changes nothing.
        _ = keys.beginEpoch()
        // Remote issuers whose key source, algorithms or HMAC secrets changed, with when their
        // set (parsed under the old settings) was installed: a set installed since — the new
        // loader's fetch, or in a cluster the record parsed again under the new settings — stays.
        let changed = prepared.config.issuers.filter { issuer in
            issuer.isRemote && current.issuers.contains { $0.name == issuer.name && !$0.hasSameKeySettings(as: issuer) }
        }.map { ($0.name, keys.loadedAt(issuerName: $0.name)) }
        for set in prepared.localKeySets {
            keys.replace(issuerName: set.issuerName, keySet: set.keySet, version: set.version)
        }
        await agent?.reconfigureIssuers(prepared.config.issuers)
        let (authenticator, loader) = Self.authentication(issuers: prepared.config.issuers, keys: keys, cache: cache, agent: agent,
                                                          httpClient: httpClient, logger: logger)
        if let previous = loaders.current { loader.carryOver(from: previous) }
        // Fetches remote key sets once before the new routes take requests; a failure is logged
        // and retried by the loader, as at start.
        do {
            try await loader.loadInitial()
        } catch {
            logger.warning("key files changed while reloading; the sets read first stay", metadata: ["error": "\(error)"])
        }
        // A set parsed under settings the file no longer has does not stay for want of a fetch
        // (a removed HMAC secret would be accepted while the issuer is unreachable): its tokens
        // fail `keys_not_loaded` until the new loader's fetch succeeds.
        for (name, installed) in changed where keys.loadedAt(issuerName: name) == installed {
            keys.remove(issuerName: name)
        }
        context.replaceRoutes(prepared.routes.checking(with: authenticator))
        // Issuers the new file no longer trusts: removed, or (not in a cluster) left with neither a
        // key source nor HMAC secrets. Their sets go, and so do the sessions of their tokens.
        let untrusted = current.issuers.filter { old in
            guard let issuer = prepared.config.issuers.first(where: { $0.name == old.name }) else { return true }
            return agent == nil && issuer.keySource == .none && issuer.hmacKeys.isEmpty
        }.map(\.name)
        for name in untrusted { keys.remove(issuerName: name) }
        context.sessions.issuersRemoved(Set(untrusted))
        // Issuers kept with other key settings: their sessions stay only on a key the sets now
        // loaded still hold.
        let rekeyed = prepared.config.issuers.filter { issuer in
            current.issuers.contains { $0.name == issuer.name && !$0.hasSameKeySettings(as: issuer) }
        }.map(\.name)
        context.sessions.keySettingsChanged(Set(rekeyed), in: keys)
        keys.expectOnlyIssuers(prepared.config.issuers.map(\.name))
        let toldOfTrust = server.replaceListener(tls: prepared.tls, trustedProxies: prepared.trustedProxies)
        loaders.start(loader)
        running.withLock { $0 = prepared.config }
        return toldOfTrust
    }

    func stop() {
        loaders.stop()
    }
}
