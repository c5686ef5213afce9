import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PortcullisCluster
import PortcullisConfig
import PortcullisJOSE
import PortcullisObservability
import Prometheus
import ServiceLifecycle
import UnixSignals
import Synchronization

/// One gateway node: the public listener, the admin listener, key sets, and (when configured) its
/// link to the cluster. Run it as a swift-service-lifecycle `Service`: SIGTERM stops accepting,
/// drains in-flight requests up to `limits.drain_timeout` and returns; SIGHUP reloads the
/// configuration file whole, or not at all (``GatewayReloader``), without dropping connections.
public final class GatewayNode: Service, Sendable {
    private let initialConfig: GatewayConfig
    private let logger: Logger
    private let registry: PrometheusCollectorRegistry
    private let ready = Atomic<Bool>(false)
    private let boundAddresses = Mutex<(public: SocketAddress?, admin: SocketAddress?)>((nil, nil))

    /// - Parameters:
    ///   - config: the parsed configuration; its `file` is re-read on SIGHUP.
    ///   - registry: where metrics go; `/metrics` serves it.
    public init(config: GatewayConfig, registry: PrometheusCollectorRegistry, logger: Logger) {
        self.initialConfig = config
        self.registry = registry
        self.logger = logger
    }

    /// The addresses actually bound (useful with port 0), once listening.
    public var addresses: (public: SocketAddress?, admin: SocketAddress?) { boundAddresses.withLock { $0 } }

    public func run() async throws {
        let config = initialConfig
        // `tracing:` is read at start only. Its exporter runs outside this service's graceful
        // shutdown and stops after the drain, so the last requests' spans are exported too.
        let tracing = config.tracing.enabled ? try TracingExporter(config: config.tracing, node: config.nodeID, logger: logger) : nil
        tracing?.start()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: config.eventLoops)
        let httpClient = JWKSDownloader.makeHTTPClient(eventLoopGroup: group)
        do {
            try await serve(config: config, group: group, httpClient: httpClient, tracing: tracing?.requestTracing)
        } catch {
            await tracing?.stop()
            try? await httpClient.shutdown()
            try? await group.shutdownGracefully()
            throw error
        }
        await tracing?.stop()
        try? await httpClient.shutdown()
        try? await group.shutdownGracefully()
    }

    private func serve(config: GatewayConfig, group: MultiThreadedEventLoopGroup, httpClient: HTTPClient, tracing: RequestTracing?) async throws {

        // Everything from the file that can fail, before any port is bound.
        let metrics = GatewayMetrics(registry: registry)
        let prepared = try await PreparedConfiguration.build(config, running: nil, offerHTTP2: config.http2.enabled, metrics: metrics,
                                                             httpClient: httpClient)
        let reloads = ConfigReloads(registry: registry, logger: logger)

        // Keys, the cluster link, and the verifier.
        let keys = KeySetStore()
        for set in prepared.localKeySets {
            keys.replace(issuerName: set.issuerName, keySet: set.keySet, version: set.version)
        }
        let agent: ClusterAgent?
        if let cluster = config.cluster {
            agent = try ClusterAgent(
                config: cluster,
                identity: NodeIdentity(id: config.nodeID, address: config.listen.description,
                                       adminAddress: config.adminListen.description, version: PortcullisVersion.current),
                keyStore: keys, issuers: config.issuers, eventLoopGroup: group, logger: logger)
        } else {
            agent = nil
        }
        let cache = !config.issuers.isEmpty && config.tokenCacheCapacity > 0 ? VerifiedTokenCache(capacity: config.tokenCacheCapacity) : nil
        let (authenticator, loader) = GatewayReloader.authentication(issuers: config.issuers, keys: keys, cache: cache, agent: agent,
                                                                     httpClient: httpClient, logger: logger)
        do {
            try await loader.loadInitial()
        } catch {
            throw GatewayError.keys("\(error)")
        }

        let overload = OverloadFlag()
        let context = GatewayContext(
            routes: prepared.routes.checking(with: authenticator), metrics: metrics, revocation: agent?.revocations, keys: keys,
            rateLimiter: agent?.rateLimiter ?? LocalRateLimiter(),
            accessLog: config.accessLog.enabled ? AccessLog(query: config.accessLog.query) : nil, tracing: tracing, overload: overload)
        agent?.revocations.onChange { [context] in context.sessions.revocationChanged() }
        keys.onChange { [context] store in context.sessions.keysChanged(in: store) }

        let server = try await GatewayServer(group: group, context: context, limits: config.limits, http2: config.http2,
                                             tls: prepared.tls, logger: logger,
                                             clientAddress: config.clientAddress)
        let available = NodeMemory.available()
        let memoryLimit = config.overload.limitBytes(available: available)
        if memoryLimit == nil, config.overload.memoryLimit != .off {
            logger.warning("overload.memory_limit is a share of memory, but neither a cgroup limit nor the machine's memory could be read; the node will not shed for memory")
        }
        if let memoryLimit, NodeMemory.resident() >= memoryLimit / 10 * 9 {
            logger.warning("resident memory at start is within a tenth of overload.memory_limit: the node may be overloaded, refusing every request, as soon as it takes traffic; raise the limit",
                           metadata: ["resident_bytes": "\(NodeMemory.resident())", "memory_limit_bytes": "\(memoryLimit)"])
        }
        let memoryGuard = MemoryGuard(limit: memoryLimit, responseWriteTimeout: config.overload.responseWriteTimeout, flag: overload,
                                      metrics: metrics, logger: logger) { [server] waited in await server.shedStalledResponses(waitedFor: waited) }
        let readyRequiresRedis = config.cluster?.readyRequiresRedis ?? false
        let scrapeTime = ScrapeTimeMetrics(registry: registry, keys: keys, cache: cache)
        let admin = AdminServer { [self, registry, keys] path in
            switch path {
            case "/metrics":
                scrapeTime.update()
                context.routeTable.recordEjectedTargets()
                return AdminResponse(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: Exposition.render(registry))
            case "/healthz":
                return .text(.ok, "ok\n")
            case "/readyz":
                if !self.ready.load(ordering: .relaxed) { return .text(.serviceUnavailable, "starting\n") }
                if !keys.isReady { return .text(.serviceUnavailable, "key sets not loaded\n") }
                // Overloaded, the node refuses new connections anyway: a load balancer should send them elsewhere.
                if overload.isSet { return .text(.serviceUnavailable, "overloaded: resident memory over overload.memory_limit\n") }
                if let agent {
                    if !agent.isSynced { return .text(.serviceUnavailable, "cluster state not synced\n") }
                    // Past max_staleness the node refuses authenticated requests (fail closed): a
                    // load balancer should send them elsewhere until it has confirmed its state.
                    if let age = agent.staleness.exceededAge() {
                        return .text(.serviceUnavailable, "revocation state not confirmed for \(age) s (max_staleness); failing closed\n")
                    }
                    if readyRequiresRedis, !agent.isRedisConnected { return .text(.serviceUnavailable, "Redis unreachable\n") }
                }
                return .text(.ok, "ready\n")
            default:
                return nil
            }
        }
        let adminAddress = try await admin.start(host: config.adminListen.host, port: config.adminListen.port)
        let publicAddress: SocketAddress
        do {
            publicAddress = try await server.start(host: config.listen.host, port: config.listen.port)
        } catch {
            await admin.stop()
            throw error
        }
        boundAddresses.withLock { $0 = (publicAddress, adminAddress) }
        ready.store(true, ordering: .relaxed)
        logger.info("gateway listening", metadata: [
            "node": "\(config.nodeID)", "public": "\(publicAddress)", "admin": "\(adminAddress)",
            "memory_limit_bytes": "\(memoryLimit.map(String.init) ?? "off")",
            "routes": "\(config.routes.count)", "issuers": "\(config.issuers.count)", "event_loops": "\(config.eventLoops)",
        ])

        let reloader = GatewayReloader(running: config, context: context, server: server, keys: keys, cache: cache, agent: agent,
                                       httpClient: httpClient, metrics: metrics, reloads: reloads, logger: logger)
        reloader.start(loader: loader)
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask { await memoryGuard.run() }
            if let agent {
                tasks.addTask { await agent.run() }
            }
            tasks.addTask {
                for await _ in await UnixSignalsSequence(trapping: .sighup) {
                    await reloader.reload()
                }
            }
            // Runs until SIGTERM/SIGINT (the service group's graceful shutdown) or cancellation.
            try? await gracefulShutdown()
            ready.store(false, ordering: .relaxed)
            logger.info("draining", metadata: ["open_connections": "\(server.connectionCount)"])
            let drained = await server.drain(deadline: config.limits.drainTimeout)
            logger.info("drained", metadata: ["complete": "\(drained)"])
            tasks.cancelAll()
        }
        reloader.stop()
        await server.closeIdlePools()
        await admin.stop()
    }

    /// `--check`: builds everything start-up builds from `config` — certificates, key files,
    /// configured secrets, routes and their upstream TLS — short of binding ports, connecting to
    /// Redis and fetching remote key sets. Throws what start-up would.
    public static func check(_ config: GatewayConfig) async throws {
        _ = try await PreparedConfiguration.build(config, running: nil, offerHTTP2: config.http2.enabled,
                                                  metrics: GatewayMetrics(registry: PrometheusCollectorRegistry()),
                                                  httpClient: JWKSDownloader.sharedHTTPClient)
    }
}
