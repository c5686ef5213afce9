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
        let told = await commit(prepared, running: current)
        reloads.succeeded(file: current.file, summary: [
            "routes": "\(prepared.config.routes.count)", "issuers": "\(prepared.config.issuers.count)",
            "connections_closed_for_client_trust": "\(told.clientTrust)",
            "connections_closed_for_trusted_proxies": "\(told.proxies)",
        ])
    }

    /// Puts a prepared configuration in force; nothing here can fail. Returns how many open
    /// connections a new client trust, and a new `trusted_proxies`, close
    /// (`GatewayServer.replaceListener`).
    ///
    /// The new key sets and the new routes go in force one right after the other: everything
    /// that waits on I/O (key files, remote issuers' fetches) was done while preparing. Between
    /// them there is only, in a cluster, the hop to the agent that parses the cluster's records
    /// under the new settings; a request on another event loop at that moment may meet the new
    /// keys under the old routes.
    private func commit(_ prepared: PreparedConfiguration, running current: GatewayConfig) async -> (clientTrust: Int, proxies: Int) {
        // From here on, what the replaced configuration's loader fetches changes nothing.
        _ = keys.beginEpoch()
        for set in prepared.localKeySets + prepared.remoteKeySets {
            keys.replace(issuerName: set.issuerName, keySet: set.keySet, version: set.version)
        }
        // A remote issuer whose key settings changed and whose set could not be fetched: the set
        // parsed under settings the file no longer has goes (a removed HMAC secret would be
        // accepted while the issuer is unreachable). Its tokens fail `keys_not_loaded` until the
        // new loader's fetch succeeds — in a cluster, until the record is parsed again below.
        for failure in prepared.remoteFetchFailures {
            logger.warning("JWKS fetch failed while reloading; the loader keeps trying", metadata: [
                "issuer": "\(failure.issuer)", "error": "\(failure.reason)",
            ])
            if current.issuers.contains(where: { $0.name == failure.issuer }) { keys.remove(issuerName: failure.issuer) }
        }
        await agent?.reconfigureIssuers(prepared.config.issuers)
        let (authenticator, loader) = Self.authentication(issuers: prepared.config.issuers, keys: keys, cache: cache, agent: agent,
                                                          httpClient: httpClient, logger: logger)
        if let previous = loaders.current { loader.carryOver(from: previous) }
        for set in prepared.remoteKeySets { loader.recordFetch(issuerName: set.issuerName, maxAge: set.maxAge) }
        context.replaceRoutes(prepared.routes.checking(with: authenticator))
        // Issuers the new file no longer trusts: removed, or (not in a cluster) left with neither a
        // key source nor HMAC secrets. Their sets go, and so do the sessions of their tokens.
        let untrusted = current.issuers.filter { old in
            guard let issuer = prepared.config.issuers.first(where: { $0.name == old.name }) else { return true }
            return agent == nil && issuer.keySource == .none && issuer.hmacKeys.isEmpty
        }.map(\.name)
        for name in untrusted { keys.remove(issuerName: name) }
        context.sessions.issuersRemoved(Set(untrusted))
        // Issuers kept with other settings: their sessions stay only where their tokens pass the
        // new ones and the sets now loaded still hold their keys.
        let reconfigured = prepared.config.issuers.filter { issuer in
            current.issuers.contains { $0.name == issuer.name && !$0.hasSameAdmission(as: issuer) }
        }
        let rekeyed = reconfigured.filter { issuer in current.issuers.contains { $0.name == issuer.name && !$0.hasSameKeySettings(as: issuer) } }
        context.sessions.issuersReconfigured(reconfigured, keySettingsChanged: Set(rekeyed.map(\.name)), inForce: prepared.config.issuers, in: keys)
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
