import NIOCore
import NIOHTTP2
import NIOPosix
import NIOSSL
import PortcullisConfig

/// HTTP/2 connections to upstreams (`upstream.protocol: h2` or `h2c`) for one event loop, per
/// target and TLS set-up: opened on first use and shared by the streams to that target from this
/// loop. A stream goes on the first connection with room under the upstream's
/// SETTINGS_MAX_CONCURRENT_STREAMS; when every connection is full another is opened, up to
/// `maxConnections` per target (beyond that, the least busy connection takes the stream and
/// swift-nio-http2 queues it until one of its streams ends). Streams that wait for a connection
/// being opened are placed when it is ready, by the same rule. A connection that closes is
/// forgotten. Confined to the event loop, like `UpstreamPool`.
///
/// One connection per target would hold a loop to the upstream's limit (nginx allows 128 streams,
/// many gRPC servers 100): the calls beyond it would wait in the gateway, and swift-nio-http2's
/// queue of waiting streams is searched on every flush (docs/benchmarks.md, "gRPC").
///
/// swift-nio-http2's rapid-reset limit is a server's defence against its clients (CVE-2023-44487:
/// more than 200 RST_STREAMs in 30 s), and its default applies to client connections too. On a
/// connection the gateway opens it closed a healthy upstream connection, failing every call on
/// it: a gRPC server or nginx ends a stream with RST_STREAM (NO_ERROR) when it answers before the
/// request's end (RFC 9113 §8.1), so a busy upstream sends one per call. The limit is raised to
/// what legitimate traffic can reach (`upstreamConfiguration`); a flood beyond it still closes the
/// connection, as do the PING/SETTINGS limit and every protocol check. A connection error closes
/// the connection, failing its open calls (`HTTP2UpstreamFault.connectionClosed`); a malformed
/// response fails its own call only, its stream reset (`HTTP2UpstreamFault.malformedStream`,
/// `HTTP2MalformedMessage`). Both are reported with the upstream, to count and log. In the other
/// direction, the resets the gateway sends for its clients are counted per connection, and one
/// that nears a server's rapid-reset limit is retired (`HTTP2UpstreamResetBudget`,
/// `HTTP2UpstreamFault.connectionRetired`). The frame guard (`HTTP2FrameGuard`) works on these
/// connections as on clients': a stream whose client is slow to read, holding the most of a
/// connection's queued frames when they pass the limit, is reset (`HTTP2FrameQueues`,
/// `HTTP2UpstreamFault.streamShed`).
///
/// Flushes are held to the end of the event loop's round (`FlushCoalescingHandler`): a stream's
/// request is written as the client connection reads it, outside this connection's read loop,
/// where swift-nio-http2 would flush each frame on its own.
final class HTTP2UpstreamPool {
    /// Connections to one target (and TLS set-up), and the streams waiting for one being opened.
    private final class Target {
        var connections: [HTTP2UpstreamConnection] = []
        var waiting: [(Result<HTTP2UpstreamConnection, UpstreamError>) -> Void] = []
        /// Streams waiting for one of the connections on their way out to close, every
        /// connection the target may have being one (`maxConnectionsWithLeaving`).
        var parked: [(Result<HTTP2UpstreamConnection, UpstreamError>) -> Void] = []
        var connecting = false
        /// When a connect to this target last failed: for `retryAfter` the existing connections take
        /// the streams (queued) rather than each overflow waiting for another failing connect.
        var failedAt: NIODeadline?

        /// The open connection with the fewest streams, to queue one more on when none has room;
        /// a retired one only when there is no other, and never one the upstream sent GOAWAY on.
        var leastBusy: HTTP2UpstreamConnection? {
            let open = connections.filter { $0.channel.isActive && !$0.goingAway }
            return (open.contains { !$0.retired } ? open.filter { !$0.retired } : open).min { $0.openStreams < $1.openStreams }
        }
    }

    /// How long after a failed connect no further connection is opened while others exist.
    static let retryAfter = TimeAmount.seconds(1)

    /// The most connections to one target from one event loop.
    static let maxConnections = 16
    /// The most connections to one target from one event loop counting those on their way out
    /// (told GOAWAY, or retired), which stay open while a stream on them lives: without it an
    /// upstream sending GOAWAY after each connection's first stream, and never answering it,
    /// makes the gateway open a connection per stream until it runs out of file descriptors.
    /// Room for an honest upstream that sends GOAWAY routinely
    /// (nginx's `keepalive_requests`, grpc-go's `MaxConnectionAge`) while long streams keep the
    /// old connections open. Past it a stream goes on a connection with room, or queued on the
    /// least busy; when every one is leaving it waits for one to close (`maxParked` at most),
    /// else fails `503 upstream_busy` (gRPC status 14) without ejecting the target.
    static let maxConnectionsWithLeaving = 128
    /// The most streams waiting, per target and loop, for a leaving connection to close.
    static let maxParked = 1024

    let eventLoop: any EventLoop
    private var targets: [UpstreamPool.Key: Target] = [:]
    private let onFault: (HTTP2UpstreamFault) -> Void

    /// `onFault` runs on this loop for each `HTTP2UpstreamFault`: a connection closed by an error
    /// on it, a stream reset, a connection retired, a run of DATA frames joined.
    init(eventLoop: any EventLoop, onFault: @escaping (HTTP2UpstreamFault) -> Void) {
        self.eventLoop = eventLoop
        self.onFault = onFault
    }

    /// swift-nio-http2's configuration for a connection to an upstream: push off, a 64 KiB window,
    /// the RST_STREAM limit raised from a server's 200 in 30 s to 2 000 in 100 ms (20 000 a second:
    /// one per call at more calls than a loop carries, while a flood still closes the connection;
    /// swift-nio-http2 reserves 8 bytes per counted reset, 16 KB here), and the last 1024 reset
    /// streams remembered.
    static let upstreamConfiguration: NIOHTTP2Handler.Configuration = {
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [HTTP2Setting(parameter: .enablePush, value: 0),
                                      HTTP2Setting(parameter: .initialWindowSize, value: 65_535)]
        // A stream the gateway resets may still get the frames the upstream sent before it saw the
        // reset; swift-nio-http2 drops those for the last `maximumRecentlyResetStreams` resets
        // (32 by default) and treats later ones as a connection error, which under hundreds of
        // concurrent calls closed healthy connections (docs/benchmarks.md, "gRPC").
        connection.maximumRecentlyResetStreams = 1024
        var stream = NIOHTTP2Handler.StreamConfiguration()
        stream.streamResetFrameRateLimit = .backstop
        return NIOHTTP2Handler.Configuration(connection: connection, stream: stream)
    }()

    /// Opens a stream to `target` whose pipeline `initialize` builds; `completion` runs on this
    /// loop with the stream's channel.
    func openStream(target: UpstreamTarget, settings: UpstreamSettings, initialize: @escaping (any Channel) throws -> Void,
                    completion: @escaping (Result<any Channel, UpstreamError>) -> Void) {
        eventLoop.preconditionInEventLoop()
        let key = UpstreamPool.Key(target.address, settings)
        let entry = targets[key] ?? { let new = Target(); targets[key] = new; return new }()
        place(entry, target: target, settings: settings) { [eventLoop] result in
            switch result {
            case .failure(let error):
                completion(.failure(error))
            case .success(let connection):
                connection.openStreams += 1
                let created = eventLoop.makePromise(of: (any Channel).self)
                let initializer = NIOLoopBound(initialize, eventLoop: eventLoop)
                let onStreamFault = NIOLoopBound(self.onFault, eventLoop: eventLoop)
                let counted = NIOLoopBound(connection, eventLoop: eventLoop)
                connection.multiplexer.createStreamChannel(promise: created) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(HTTP2UpstreamResetCounter {
                            if counted.value.noteReset(at: .now()) {
                                onStreamFault.value(.connectionRetired(upstream: target.address))
                            }
                        })
                        // After the counter, which passes every frame on and counts the meter's reset.
                        try channel.pipeline.syncOperations.addHandler(HTTP2FrameQueueMeter(queues: counted.value.queues) {
                            onStreamFault.value(.streamShed(upstream: target.address))
                        })
                        try initializer.value(channel)
                    }
                }
                created.futureResult.assumeIsolated().whenComplete { result in
                    switch result {
                    case .success(let channel):
                        channel.closeFuture.assumeIsolated().whenComplete { _ in connection.streamClosed() }
                    case .failure:
                        connection.streamClosed()
                    }
                    completion(result.mapError { .connectFailed("\(target.address): cannot open a stream: \($0)") })
                }
            }
        }
    }

    /// Hands `done` a connection for one more stream: one with room, else a new one (waiting for
    /// it with the others if one is being opened), else the least busy.
    private func place(_ entry: Target, target: UpstreamTarget, settings: UpstreamSettings,
                       _ done: @escaping (Result<HTTP2UpstreamConnection, UpstreamError>) -> Void) {
        entry.connections.removeAll { !$0.channel.isActive }
        if let connection = entry.connections.first(where: \.hasRoom) { return done(.success(connection)) }
        if entry.connecting { return entry.waiting.append(done) }
        let recentlyFailed = entry.failedAt.map { NIODeadline.now() - $0 < Self.retryAfter } ?? false
        // Retired connections and those told GOAWAY are on their way out: they do not count
        // against the limit, only against the hard one.
        let belowHardLimit = entry.connections.count < Self.maxConnectionsWithLeaving
        if entry.connections.count(where: { !$0.leaving }) < Self.maxConnections, belowHardLimit, entry.connections.isEmpty || !recentlyFailed {
            entry.waiting.append(done)
            entry.connecting = true
            return connect(target: target, settings: settings) { [self] result in
                entry.connecting = false
                let waiting = entry.waiting
                entry.waiting = []
                switch result {
                case .success(let connection):
                    // Until its own SETTINGS arrive it is trusted with what the others were told.
                    if !connection.settingsSeen, let learned = entry.connections.first(where: \.settingsSeen) {
                        connection.maxStreams = learned.maxStreams
                    }
                    entry.failedAt = nil
                    entry.connections.append(connection)
                    // A stream parked at the hard limit is placed again once a connection closes.
                    connection.channel.closeFuture.assumeIsolated().whenComplete { [self] _ in
                        guard !entry.parked.isEmpty else { return }
                        let parked = entry.parked
                        entry.parked = []
                        for waiter in parked { place(entry, target: target, settings: settings, waiter) }
                    }
                    // Placed again: those beyond its room go to another connection.
                    for waiter in waiting { place(entry, target: target, settings: settings, waiter) }
                case .failure(let error):
                    entry.failedAt = .now()
                    // Full connections still take the streams (queued by swift-nio-http2).
                    for waiter in waiting { waiter(entry.leastBusy.map { .success($0) } ?? .failure(error)) }
                }
            }
        }
        if let connection = entry.leastBusy { return done(.success(connection)) }
        if !belowHardLimit, entry.connections.contains(where: \.channel.isActive) {
            guard entry.parked.count < Self.maxParked else {
                return done(.failure(.poolFull("\(target.address): \(entry.connections.count) connections on their way out and \(entry.parked.count) streams waiting")))
            }
            return entry.parked.append(done)
        }
        done(.failure(.connectFailed("\(target.address): no connection")))
    }

    private func connect(target: UpstreamTarget, settings: UpstreamSettings,
                         completion: @escaping (Result<HTTP2UpstreamConnection, UpstreamError>) -> Void) {
        let address = target.address
        let configuration = Self.upstreamConfiguration
        let onFault = NIOLoopBound(self.onFault, eventLoop: eventLoop)
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(settings.connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls = settings.tls {
                        try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: settings.tlsServerName ?? UpstreamPool.sniName(address.host)))
                    }
                    try sync.addHandler(FlushCoalescingHandler())
                    try sync.addHandler(HTTP2DataFrameJoiner(prefaceBytes: 0) { joined in onFault.value(.dataFramesJoined(upstream: address, count: joined)) })
                    try sync.addHandler(HTTP2FrameGuard(role: .client))
                    // The gateway takes no pushed streams.
                    _ = try sync.configureHTTP2Pipeline(mode: .client, connectionConfiguration: configuration.connection,
                                                        streamConfiguration: configuration.stream) { pushed in pushed.close() }
                    try sync.addHandler(HTTP2UpstreamSettingsWatcher())
                    try sync.addHandler(HTTP2ConnectionErrorHandler(
                        linger: nil, onMalformedStream: { error in onFault.value(.malformedStream(upstream: address, error: error)) },
                        onError: { error in onFault.value(.connectionClosed(upstream: address, error: error)) }))
                }
            }
        bootstrap.connect(host: address.host, port: address.port).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                do {
                    let sync = channel.pipeline.syncOperations
                    let connection = HTTP2UpstreamConnection(multiplexer: try sync.handler(type: NIOHTTP2Handler.self).syncMultiplexer(),
                                                             channel: channel, queues: try sync.handler(type: HTTP2FrameGuard.self).queues)
                    try sync.handler(type: HTTP2UpstreamSettingsWatcher.self).connection = connection
                    completion(.success(connection))
                } catch {
                    channel.close(promise: nil)
                    completion(.failure(.connectFailed("\(address): \(error)")))
                }
            case .failure(let error):
                completion(.failure(.connecting(to: address, error)))
            }
        }
    }

    /// Closes every connection (shutdown).
    func closeAll() {
        for entry in targets.values {
            let parked = entry.parked
            entry.parked = []
            for waiter in parked { waiter(.failure(.poolFull("the gateway is shutting down"))) }
            for connection in entry.connections { connection.channel.close(promise: nil) }
        }
        targets.removeAll()
    }
}
