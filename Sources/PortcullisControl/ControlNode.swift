import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import PortcullisCluster
import PortcullisConfig
import PortcullisJOSE
import PortcullisObservability
import PortcullisRedis
import Prometheus
import ServiceLifecycle

/// One control-plane node: the admin API and `/metrics` on `admin_listen`, the optional
/// authorization server and `/healthz` on `listen`, and the cluster chores (key-set fetching and
/// publishing, refetch requests, the control-plane heartbeat, revocation pruning, signing-key
/// rotation, cluster metrics). All state lives in Redis, so two nodes can run side by side;
/// chores that must happen once take a lock in Redis. Run it as a swift-service-lifecycle
/// `Service`: SIGTERM/SIGINT stop the listeners and the chores; SIGHUP reloads what can change
/// while running (``ControlReloader``).
public final class ControlNode: Service, Sendable {
    private let config: ControlConfig
    private let registry: PrometheusCollectorRegistry
    private let logger: Logger

    public init(config: ControlConfig, registry: PrometheusCollectorRegistry, logger: Logger) {
        self.config = config
        self.registry = registry
        self.logger = logger
    }

    public func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let httpClient = JWKSDownloader.makeHTTPClient(eventLoopGroup: group)
        // Everything built on the event loops lives inside serve(), so it is released (the Redis
        // clients close their connections on the loops in deinit) before the loops stop.
        do {
            try await serve(group: group, httpClient: httpClient)
        } catch {
            try? await httpClient.shutdown()
            try? await group.shutdownGracefully()
            throw error
        }
        try? await httpClient.shutdown()
        try? await group.shutdownGracefully()
    }

    private func serve(group: MultiThreadedEventLoopGroup, httpClient: HTTPClient) async throws {
        let config = self.config
        let logger = self.logger
        let redis = config.cluster.redis
        let client = RedisClient(configuration: redis, eventLoopGroup: group, logger: logger)
        let subscriber = RedisSubscriber(configuration: redis, eventLoopGroup: group, logger: logger)
        let keys = ClusterKeys(prefix: config.cluster.keyPrefix)
        let mac = ClusterMAC(secret: config.cluster.secret, cluster: config.cluster.keyPrefix)
        let alarm = TamperingAlarm(prefix: config.cluster.keyPrefix, logger: logger)
        let metrics = ControlMetrics(registry: registry)
        // The control plane follows the log like a gateway (but acknowledges nothing): introspection
        // and the admin API's counts read this copy, and the writer never continues a head behind it.
        let revocationList = RevocationFollower(client: client, keys: keys, mac: mac, alarm: alarm, node: nil,
                                                maxStaleness: nil, logger: logger)
        let store = RevocationStore(client: client, keys: keys, mac: mac, maxTokenLifetime: config.cluster.maxTokenLifetime,
                                    requiredReplicas: config.cluster.requiredReplicas, replicaTimeout: config.cluster.replicaTimeout, logger: logger,
                                    knownPosition: { revocationList.position })
        let revocations = RevocationService(store: store, metrics: metrics, maxTokenLifetime: config.cluster.maxTokenLifetime)
        let membership = Membership(client: client, keys: keys, mac: mac, alarm: alarm)
        let view = ClusterView(client: client, keys: keys, store: store, membership: membership, revocationList: revocationList)
        let publisher = KeySetPublisher(client: client, keys: keys, mac: mac)
        let audit = AuditLog(client: client, keys: keys, logger: Logger(label: "portcullis.audit"))
        let fetcher = IssuerKeyFetcher(issuers: config.issuers, downloader: JWKSDownloader(httpClient: httpClient, logger: logger),
                                       publisher: publisher, client: client, nodeID: config.nodeID, metrics: metrics, alarm: alarm, logger: logger)

        let authorizationServer: AuthorizationServer?
        if let asConfig = config.authorizationServer {
            let kek = try config.keyEncryptionKeyError { () throws(KeyEncryptionKey.LoadError) in
                try KeyEncryptionKey.loadOrCreate(path: asConfig.keyEncryptionKeyFile, logger: logger)
            }
            let verificationKeys = KeySetStore()
            let ring = SigningKeyRing(config: asConfig, client: client, keys: keys, kek: kek, publisher: publisher, membership: membership, mac: mac, alarm: alarm,
                                      verificationKeys: verificationKeys, metrics: metrics, logger: logger,
                                      isKeyRevoked: { [issuer = asConfig.issuer] kid in revocationList.set.isKeyRevoked(kid: kid, issuer: issuer) },
                                      isListSynced: { revocationList.isSynced },
                                      revokeKey: { [issuer = asConfig.issuer] kid, actor in
                                          try await revocations.add(kind: .key, value: kid, issuer: issuer, until: Int64(Date().timeIntervalSince1970),
                                                                    actor: actor, reason: "signing key retired").revocation.id
                                      })
            let recordMAC = RecordMAC.derive(secret: config.cluster.secret, cluster: config.cluster.keyPrefix)
            let codes = AuthorizationCodeStore(client: client, keys: keys, usedRetention: asConfig.refreshTokenTTL, recordMAC: recordMAC)
            var sessions = LoginSessionStore(client: client, keys: keys, formMAC: LoginSessionStore.formMAC(
                secret: config.cluster.secret, cluster: config.cluster.keyPrefix), recordMAC: recordMAC)
            sessions.consentFloor = { [issuer = asConfig.issuer] username, clientID in
                guard revocationList.isSynced else { return .max }
                return revocationList.set.cutoffs(issuer: issuer, subject: username, clientID: clientID).grant
            }
            if let users = asConfig.users, users.costs > 1 {
                logger.warning("the users file's password hashes have \(users.costs) different scrypt costs: sign-in timing tells users of the less common ones from unknown names; hash them again with one cost (portcullis hash-password)",
                               metadata: ["users_file": "\(asConfig.usersFile ?? "-")"])
            }
            let endpoint = asConfig.users.map { [sessions] users in
                AuthorizationEndpoint(config: asConfig, users: users, codes: codes, sessions: sessions,
                                      throttle: LoginThrottle(client: client, keys: keys, limits: asConfig.loginThrottle),
                                      basePath: AuthorizationServer.basePath(issuer: asConfig.issuer), revocationList: revocationList,
                                      audit: audit, metrics: metrics, logger: logger)
            }
            authorizationServer = AuthorizationServer(
                config: asConfig, ring: ring, refreshTokens: RefreshTokenStore(client: client, keys: keys, ttl: asConfig.refreshTokenTTL, recordMAC: recordMAC),
                codes: codes, endpoint: endpoint, revocations: revocations, revocationList: revocationList, verificationKeys: verificationKeys,
                throttle: LoginThrottle(client: client, keys: keys, limits: asConfig.loginThrottle), audit: audit, metrics: metrics, logger: logger)
        } else {
            authorizationServer = nil
        }
        let settings = ReloadableAdminSettings(AdminSettings(config))
        let admin = AdminAPI(config: config, settings: settings, revocations: revocations, store: store,
                             tracker: PropagationTracker(store: store, view: view), view: view, audit: audit, fetcher: fetcher,
                             publisher: publisher, authorizationServer: authorizationServer, metrics: metrics, logger: logger)
        if !config.adminListen.isLoopback {
            logger.warning("the admin API listens beyond loopback; every call still needs a bearer token",
                           metadata: ["admin_listen": "\(config.adminListen)"])
        }
        let listenerTLS = try ControlReloader.listenerTLS(config)
        let publicTLS = listenerTLS.public.map(ListenerTLSBox.init)
        let adminTLS = listenerTLS.admin.map(ListenerTLSBox.init)
        let adminApp = Application(
            router: admin.router(),
            server: .http1(tls: adminTLS, idleTimeout: config.idleTimeout, cap: ConnectionCap(limit: config.maxConnections)),
            configuration: .init(address: .hostname(config.adminListen.host, port: config.adminListen.port), serverName: "portcullis-control"),
            onServerRunning: { channel in
                logger.info("admin API listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "-")"])
            },
            eventLoopGroupProvider: .shared(group), logger: logger)
        let publicApp = Application(
            router: PublicRoutes.router(server: authorizationServer,
                                        certificates: config.tls?.verifiesClientCertificatesItself == true ? .byVerifier : .byHandshake),
            server: .http1(tls: publicTLS, idleTimeout: config.idleTimeout, cap: ConnectionCap(limit: config.maxConnections)),
            configuration: .init(address: .hostname(config.listen.host, port: config.listen.port), serverName: "portcullis-control"),
            onServerRunning: { channel in
                logger.info("public listener up", metadata: [
                    "address": "\(channel.localAddress.map { "\($0)" } ?? "-")",
                    "authorization_server": "\(authorizationServer?.config.issuer ?? "off")",
                ])
            },
            eventLoopGroupProvider: .shared(group), logger: logger)
        let chores = ControlChores(config: config, client: client, subscriber: subscriber, keys: keys, mac: mac, store: store, view: view,
                                   revocationList: revocationList, revocationSubscriber: RedisSubscriber(configuration: redis, eventLoopGroup: group, logger: logger),
                                   publisher: publisher, fetcher: fetcher, ring: authorizationServer?.ring, metrics: metrics, logger: logger)
        logger.info("control plane starting", metadata: [
            "node": "\(config.nodeID)", "issuers": "\(config.issuers.count)", "admin_tokens": "\(config.adminCredentials.count)",
        ])
        let reloader = ControlReloader(running: config, publicTLS: publicTLS, adminTLS: adminTLS, settings: settings,
                                       reloads: ConfigReloads(registry: registry, logger: logger))
        let services = ServiceGroup(configuration: .init(
            services: [.init(service: chores), .init(service: publicApp), .init(service: adminApp), .init(service: reloader)],
            logger: logger))
        do {
            try await services.run()
        } catch {
            await shutdown(client: client, subscriber: subscriber, chores: chores)
            throw error
        }
        await shutdown(client: client, subscriber: subscriber, chores: chores)
    }

    private func shutdown(client: RedisClient, subscriber: RedisSubscriber, chores: ControlChores) async {
        await chores.leave()
        await subscriber.close()
        await client.close()
    }
}
