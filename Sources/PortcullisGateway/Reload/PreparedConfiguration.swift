import AsyncHTTPClient
import NIOSSL
import PortcullisCluster
import PortcullisConfig
import PortcullisJOSE

/// A configuration file turned into everything the gateway runs from it — compiled routes and
/// their policies, the listener's certificate and trusted proxies, the issuers and the key sets
/// read from files or configured secrets — with every step that can fail already done, and
/// nothing yet changed in the running node. Start-up, SIGHUP and `--check` all build one; a
/// reload puts it in force only when it was built whole (``GatewayReloader``).
struct PreparedConfiguration: Sendable {
    /// One issuer's key set as read, to be installed when the configuration goes in force.
    struct KeySet: Sendable {
        let issuerName: String
        let keySet: JWKSet
        let version: String?
        /// A fetched set's `Cache-Control: max-age`, which sets when it is fetched again.
        var maxAge: Duration? = nil
    }

    let config: GatewayConfig
    /// The routes without their authenticator, which is built at commit time.
    let routes: RouteTable
    let tls: ListenerTLS?
    let trustedProxies: TrustedProxies?
    /// `jwks_file` issuers' sets, and configured-secret (HMAC) ones' outside a cluster (in one,
    /// `KeySetSubscriber` installs them).
    let localKeySets: [KeySet]
    /// On a reload, the sets of remote issuers that are new or whose key settings changed,
    /// fetched once while nothing was yet in force, so that the keys and routes go in force
    /// together (`GatewayReloader.commit`); an issuer whose fetch failed is named in
    /// `remoteFetchFailures` with why.
    let remoteKeySets: [KeySet]
    let remoteFetchFailures: [(issuer: String, reason: String)]

    /// Builds everything from `config` that can fail, short of binding ports and connecting.
    /// - Parameters:
    ///   - running: the configuration in force, on a reload: settings read only at start must
    ///     not differ from it.
    ///   - offerHTTP2: whether the listener's ALPN offers `h2` (read at start).
    static func build(_ config: GatewayConfig, running: GatewayConfig?, offerHTTP2: Bool, metrics: GatewayMetrics,
                      httpClient: HTTPClient) async throws -> PreparedConfiguration {
        if let running {
            if let changes = running.startOnly.changes(to: config.startOnly) { throw changes }
            if running.cluster != nil { try Self.checkClusterIssuers(config, running: running) }
        }
        let tls: ListenerTLS?
        do {
            tls = try ListenerTLS.make(config.tls, offerHTTP2: offerHTTP2)
        } catch {
            throw ConfigError(file: config.file, line: nil, column: nil, keyPath: "tls", message: "\(error)")
        }
        let routes = try RouteTable(config: config, metrics: metrics)
        let downloader = JWKSDownloader(httpClient: httpClient, logger: nil)
        var keySets: [KeySet] = []
        for (index, issuer) in config.issuers.enumerated() {
            switch issuer.keySource {
            case .jwksFile(let path):
                do {
                    let document = try await downloader.download(issuer)
                    keySets.append(KeySet(issuerName: issuer.name, keySet: document.keySet, version: document.version))
                } catch {
                    throw ConfigError(file: config.file, line: nil, column: nil, keyPath: "issuers[\(index)].jwks_file",
                                      message: "issuer '\(issuer.name)': cannot load \(path): \(error.message)")
                }
            case .none where !issuer.hmacKeys.isEmpty && config.cluster == nil:
                keySets.append(KeySet(issuerName: issuer.name, keySet: JWKSet.configuredKeys(of: issuer), version: "config"))
            default:
                break
            }
        }
        var (remote, failures): ([KeySet], [(issuer: String, reason: String)]) = ([], [])
        if let running { (remote, failures) = await fetchRemoteKeySets(config.issuers, running: running, downloader: downloader) }
        return PreparedConfiguration(config: config, routes: routes, tls: tls, trustedProxies: TrustedProxies(config.clientAddress),
                                     localKeySets: keySets, remoteKeySets: remote, remoteFetchFailures: failures)
    }

    /// Fetches, once and side by side, the sets of the remote issuers in `issuers` that `running`
    /// does not have with the same key settings. Each fetch is bounded by the downloader's deadline.
    private static func fetchRemoteKeySets(_ issuers: [IssuerConfig], running: GatewayConfig,
                                           downloader: JWKSDownloader) async -> ([KeySet], [(issuer: String, reason: String)]) {
        let fetched = issuers.filter { issuer in
            issuer.isRemote && !running.issuers.contains { $0.name == issuer.name && $0.hasSameKeySettings(as: issuer) }
        }
        return await withTaskGroup(of: Result<KeySet, RemoteFetchFailure>.self) { group in
            for issuer in fetched {
                group.addTask {
                    do throws(JWKSDownloader.Failure) {
                        let document = try await downloader.download(issuer)
                        JWKSDownloader.countFetch(issuerName: issuer.name, outcome: "ok")
                        return .success(KeySet(issuerName: issuer.name, keySet: document.keySet, version: document.version, maxAge: document.maxAge))
                    } catch {
                        JWKSDownloader.countFetch(issuerName: issuer.name, outcome: error.outcome)
                        return .failure(RemoteFetchFailure(issuer: issuer.name, reason: error.message))
                    }
                }
            }
            var sets: [KeySet] = [], failures: [(issuer: String, reason: String)] = []
            for await result in group {
                switch result {
                case .success(let set): sets.append(set)
                case .failure(let failure): failures.append((failure.issuer, failure.reason))
                }
            }
            return (sets, failures)
        }
    }

    private struct RemoteFetchFailure: Error {
        let issuer: String
        let reason: String
    }

    /// In a cluster, issuers whose keys come from Redis are subscribed to at start: a reload may
    /// change their audiences, algorithms and leeway, not which they are.
    private static func checkClusterIssuers(_ config: GatewayConfig, running: GatewayConfig) throws {
        func fromCluster(_ issuers: [IssuerConfig]) -> [String] {
            issuers.filter { if case .jwksFile = $0.keySource { false } else { true } }.map { "\($0.name) \($0.issuer)" }
        }
        let old = fromCluster(running.issuers), new = fromCluster(config.issuers)
        guard Set(old) == Set(new) else {
            let added = new.filter { !old.contains($0) }, removed = old.filter { !new.contains($0) }
            throw ConfigError(file: config.file, line: nil, column: nil, keyPath: "issuers",
                              message: "issuers whose keys come from the cluster changed (added: \(added.isEmpty ? "none" : added.joined(separator: ", ")); "
                                  + "removed: \(removed.isEmpty ? "none" : removed.joined(separator: ", "))), but they are subscribed to at start: restart the node to apply it")
        }
    }
}
