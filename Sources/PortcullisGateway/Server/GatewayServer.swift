import Logging
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization

/// The public listener: accepts connections, builds each one's pipeline — HTTP/1.1 or HTTP/2, told
/// apart by ALPN on TLS and by the connection preface on plaintext — counts them, and on
/// shutdown stops accepting and lets in-flight requests finish (NIO's quiescing helper; HTTP/2
/// connections get GOAWAY). While the node is overloaded (`MemoryGuard`) new connections are
/// closed at once, and the overload guard cuts stalled responses through each event loop's
/// `OverloadSheddingSet`.
final class GatewayServer: Sendable {
    private let group: any EventLoopGroup
    private let context: GatewayContext
    private let limits: ServerLimits
    private let http2: HTTP2Config
    private let pools: [ObjectIdentifier: NIOLoopBound<UpstreamPool>]
    private let shedding: [ObjectIdentifier: NIOLoopBound<OverloadSheddingSet>]
    /// What a new connection is set up with; replaced on SIGHUP (open connections keep theirs,
    /// short of the client trust: `ListenerSetup`).
    private let listener: ListenerSetup
    private let connections: ConnectionCount
    private let quiesce: ServerQuiescingHelper
    private let channel: Mutex<(any Channel)?> = Mutex(nil)
    private let logger: Logger
    private let proxyProtocol: Bool

    init(group: any EventLoopGroup, context: GatewayContext, limits: ServerLimits, http2: HTTP2Config, tls: ListenerTLS?,
         logger: Logger, clientAddress: ClientAddressConfig = ClientAddressConfig()) async throws {
        self.group = group
        self.proxyProtocol = clientAddress.proxyProtocol
        self.context = context
        self.limits = limits
        self.http2 = http2
        self.listener = ListenerSetup(.init(tls: tls, trustedProxies: TrustedProxies(clientAddress)))
        self.logger = logger
        self.quiesce = ServerQuiescingHelper(group: group)
        self.connections = ConnectionCount(limit: limits.maxConnections, gauge: context.metrics.openConnections)
        var pools: [ObjectIdentifier: NIOLoopBound<UpstreamPool>] = [:]
        var shedding: [ObjectIdentifier: NIOLoopBound<OverloadSheddingSet>] = [:]
        let metrics = context.metrics
        for loop in group.makeIterator() {
            shedding[ObjectIdentifier(loop)] = try await loop.submit { NIOLoopBound(OverloadSheddingSet(), eventLoop: loop) }.get()
            pools[ObjectIdentifier(loop)] = try await loop.submit {
                NIOLoopBound(UpstreamPool(eventLoop: loop) { fault in
                    switch fault {
                    case .connectionClosed(let address, let error):
                        metrics.upstreamHTTP2ConnectionErrors.increment()
                        logger.warning("HTTP/2 connection to upstream closed after an error on it; its open streams fail",
                                       metadata: ["upstream": "\(address)", "error": "\(error)"])
                    case .malformedStream(let address, let error):
                        metrics.upstreamHTTP2StreamErrors.increment()
                        logger.warning("HTTP/2 stream to upstream reset for a malformed message (its response, or a request HTTP/2 does not allow); its request fails",
                                       metadata: ["upstream": "\(address)", "error": "\(error)"])
                    case .streamShed(let address):
                        metrics.upstreamHTTP2QueueResets.increment()
                        logger.warning("HTTP/2 stream to upstream reset (ENHANCE_YOUR_CALM): its connection held too many frames not yet read (small frames on streams whose client is slow to read); its request fails",
                                       metadata: ["upstream": "\(address)"])
                    case .dataFramesJoined(_, let count):
                        metrics.upstreamHTTP2DataFramesJoined.increment(by: Int64(count))
                    case .connectionRetired(let address):
                        metrics.upstreamHTTP2ConnectionsRetired.increment()
                        logger.notice("HTTP/2 connection to upstream retired after \(HTTP2UpstreamResetBudget.limit) stream resets for clients in \(HTTP2UpstreamResetBudget.window.nanoseconds / 1_000_000_000) s (before the upstream's rapid-reset limit); new streams go on another",
                                      metadata: ["upstream": "\(address)"])
                    }
                }, eventLoop: loop)
            }.get()
        }
        self.pools = pools
        self.shedding = shedding
    }

    /// Starts listening; returns the bound address (port 0 picks a free port).
    func start(host: String, port: Int) async throws -> SocketAddress {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { [quiesce] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try self.initialize(channel) }
            }
        do {
            let server = try await bootstrap.bind(host: host, port: port).get()
            channel.withLock { $0 = server }
            guard let address = server.localAddress else { throw GatewayError.bind("\(host):\(port): no local address") }
            return address
        } catch let error as GatewayError {
            throw error
        } catch {
            throw GatewayError.bind("\(host):\(port): \(error)")
        }
    }

    private func initialize(_ channel: any Channel) throws {
        if context.overload.isSet {
            context.metrics.overloadRefusedConnections.increment()
            channel.close(promise: nil)
            return
        }
        guard connections.acquire() else {
            context.metrics.rejectedConnections.increment()
            channel.close(promise: nil)
            return
        }
        channel.closeFuture.whenComplete { [connections] _ in connections.release() }
        let peer = channel.remoteAddress?.ipAddress.map(Self.unmapped)
        guard proxyProtocol else { return try addHTTPHandlers(channel, clientAddress: peer) }
        // The PROXY protocol header comes first, before TLS; the rest of the pipeline waits for it.
        let refused = context.metrics.proxyProtocolRefused
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ProxyProtocolHandler(
            timeout: TimeAmount(limits.headerReadTimeout),
            onHeader: { [self] channel, source in try addHTTPHandlers(channel, clientAddress: source ?? peer) },
            onRefused: { refused($0) })))
    }

    /// TLS, timeouts and the protocol's handlers (HTTP/1.1 or HTTP/2), for a client at `clientAddress`.
    private func addHTTPHandlers(_ channel: any Channel, clientAddress: String?) throws {
        let sync = channel.pipeline.syncOperations
        let (setup, trustGeneration) = listener.open(channel, peer: clientAddress)
        let tlsContext = setup.tls?.context
        if let tlsContext {
            try sync.addHandler(NIOSSLServerHandler(context: tlsContext))
        }
        let stalled = context.metrics.stalledResponseWrites
        let shedding = shedding[ObjectIdentifier(channel.eventLoop)]?.value
        let timeouts = ConnectionTimeoutHandler(headReadTimeout: TimeAmount(limits.headerReadTimeout), idleTimeout: TimeAmount(limits.idleTimeout),
                                                responseWriteTimeout: TimeAmount(limits.responseWriteTimeout), shedding: shedding) { stalled.increment() }
        try sync.addHandler(timeouts)
        guard let pool = pools[ObjectIdentifier(channel.eventLoop)]?.value else {
            throw GatewayError.bind("connection on an event loop without a pool")
        }
        let client = HeaderRewriter.ClientInfo(address: clientAddress, isTLS: tlsContext != nil, trustedProxies: setup.trustedProxies,
                                               trust: setup.tls == nil ? nil : (listener, trustGeneration),
                                               certificateRequired: setup.tls?.clientTrust?.required ?? false)
        guard http2.enabled else {
            return try addHTTP1(to: channel, timeouts: timeouts, pool: pool, client: client)
        }
        // Runs on the connection's event loop once the protocol is known.
        let speak: (HTTP2PrefaceDetector.Spoken, any Channel) throws -> Void = { [self] spoken, channel in
            switch spoken {
            case .http1:
                try addHTTP1(to: channel, timeouts: timeouts, pool: pool, client: client)
            case .http2:
                context.metrics.http2Connections.increment()
                // The connection manager keeps HTTP/2's idle time; the head-read and idle timers
                // are HTTP/1.1's. The response-write deadline stays.
                timeouts.headReceived()
                try HTTP2Pipeline.configure(channel, config: http2, limits: limits,
                                            shared: HTTP2ConnectionShared(gateway: context, pool: pool, client: client, connections: connections, limits: limits,
                                                                          eventLoop: channel.eventLoop, shedding: shedding))
            }
            // A reload replaced the client trust, or stopped trusting the proxy the connection
            // comes from, before its protocol was known (during the handshake, or before its
            // first bytes), after the connection was told: it is told again now that its
            // protocol's handlers can hear it.
            if !client.certificateTrustIsCurrent || !listener.stillTrustsProxy(clientAddress, openedWith: setup.trustedProxies) {
                channel.pipeline.fireUserInboundEventTriggered(ClientTrustReplacedEvent())
            }
        }
        if tlsContext != nil {
            try sync.addHandler(ApplicationProtocolNegotiationHandler { result, channel in
                channel.eventLoop.makeCompletedFuture {
                    if case .negotiated("h2") = result { try speak(.http2, channel) } else { try speak(.http1, channel) }
                }
            })
        } else {
            try sync.addHandler(HTTP2PrefaceDetector { spoken, detector in try speak(spoken, detector.channel) })
        }
    }

    /// The HTTP/1.1 pipeline: NIO's request decoder and `ProxyHandler`.
    private func addHTTP1(to channel: any Channel, timeouts: ConnectionTimeoutHandler, pool: UpstreamPool,
                          client: HeaderRewriter.ClientInfo) throws {
        context.metrics.http1Connections.increment()
        let sync = channel.pipeline.syncOperations
        var decoderLimits = NIOHTTPDecoderLimitConfiguration()
        decoderLimits.maxHeaderListSize = limits.maxHeaderBytes
        decoderLimits.maxHeaderFieldSize = limits.maxHeaderBytes
        decoderLimits.maxHeaderFieldCount = 256
        // Requests are parsed by NIO's llhttp decoder, whose strictness is the defence against
        // request smuggling. Responses are written by `ProxyHandler` itself (`HTTP1Writer`), so
        // there is no response encoder; the decoder's errors are answered there too.
        try sync.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes,
                                                                    informationalResponseStrategy: .drop,
                                                                    limitConfiguration: decoderLimits)))
        try sync.addHandler(ProxyHandler(gateway: context, pool: pool, timeouts: timeouts, bodyRate: RequestBodyRate.Limit(limits), client: client))
    }

    /// An IPv4 client of a dual-stack listener appears as `::ffff:a.b.c.d`: it is that IPv4
    /// address (rate-limit keys, `X-Forwarded-For`, the access log), not an IPv6 one.
    static func unmapped(_ address: String) -> String {
        let prefix = "::ffff:"
        guard address.count > prefix.count, address.lowercased().hasPrefix(prefix) else { return address }
        let rest = address.dropFirst(prefix.count)
        return rest.contains(".") ? String(rest) : address
    }

    /// Whether the listener speaks HTTP/2 (`http2.enabled`, read at start).
    var offersHTTP2: Bool { http2.enabled }

    /// Swaps the TLS setup and the trusted proxies for new connections (SIGHUP); open
    /// connections keep theirs, except that a narrower client trust (a root of `tls.client_ca`
    /// removed, a certificate newly required) reaches them at once (`ListenerSetup`): each is told to close after
    /// its requests in flight, and the sessions admitted on the strength of its certificate end.
    /// A connection from a proxy the new `trusted_proxies` leaves out is told the same.
    /// Returns how many connections were told for each (a TLS connection from such a proxy,
    /// under a narrowed trust too, is told once and counted with the client trust). (Whether the
    /// listener speaks TLS at all is read at start.)
    @discardableResult
    func replaceListener(tls: ListenerTLS?, trustedProxies: TrustedProxies?) -> (clientTrust: Int, proxies: Int) {
        let replaced = listener.replace(.init(tls: tls, trustedProxies: trustedProxies))
        let told = (replaced.underNarrowedTrust ?? []) + replaced.fromDistrustedProxies
        for channel in told {
            channel.pipeline.fireUserInboundEventTriggered(ClientTrustReplacedEvent())
        }
        if replaced.underNarrowedTrust != nil { context.sessions.clientTrustReplaced() }
        return (replaced.underNarrowedTrust?.count ?? 0, replaced.fromDistrustedProxies.count)
    }

    var connectionCount: Int { connections.current }

    /// Cuts, on every event loop, the responses that have waited on their clients for `waitedFor`
    /// or longer (`OverloadShedding`), and closes the loop's idle HTTP/1.1 upstream connections;
    /// returns how many client connections and streams were cut.
    func shedStalledResponses(waitedFor: TimeAmount) async -> Int {
        // On every loop at once: a busy loop delays only its own part.
        let each = shedding.map { key, set in
            let pool = pools[key]
            return set.eventLoop.submit {
                pool?.value.closeIdle()
                return set.value.shed(waitedFor: waitedFor, now: .now())
            }
        }
        var cut = 0
        for future in each { cut += (try? await future.get()) ?? 0 }
        return cut
    }

    /// Stops accepting, closes idle connections, and waits for in-flight requests up to `deadline`.
    /// Returns true when every connection finished in time.
    func drain(deadline: Duration) async -> Bool {
        let loop = group.next()
        let quiesced = loop.makePromise(of: Void.self)
        let outcome = loop.makePromise(of: Bool.self)
        let settled = Atomic<Bool>(false)
        @Sendable func settle(_ value: Bool) {
            if !settled.exchange(true, ordering: .relaxed) { outcome.succeed(value) }
        }
        quiesce.initiateShutdown(promise: quiesced)
        quiesced.futureResult.whenComplete { settle((try? $0.get()) != nil) }
        let timer = loop.scheduleTask(in: TimeAmount(deadline)) { settle(false) }
        let finished = (try? await outcome.futureResult.get()) ?? false
        timer.cancel()
        if !finished {
            logger.warning("drain deadline passed with connections still open", metadata: ["open": "\(connectionCount)"])
        }
        return finished
    }

    func closeIdlePools() async {
        for (_, pool) in pools {
            try? await pool.eventLoop.submit { pool.value.closeAll() }.get()
        }
    }
}
