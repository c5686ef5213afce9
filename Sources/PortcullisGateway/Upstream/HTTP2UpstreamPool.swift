import NIOCore
import NIOHTTP2
import NIOPosix
import NIOSSL
import PortcullisConfig

/// HTTP/2 connections to upstreams (`upstream.protocol: h2` or `h2c`) for one event loop: one
/// multiplexed connection per target and TLS set-up, opened on first use and shared by every
/// stream to that target from this loop (swift-nio-http2 queues streams beyond the upstream's
/// SETTINGS_MAX_CONCURRENT_STREAMS until one ends). A connection that closes is forgotten and the
/// next stream opens a new one. Confined to the event loop, like `UpstreamPool`.
///
/// swift-nio-http2's flood limits are a server's defence against its clients (rapid reset,
/// CVE-2023-44487: more than 200 RST_STREAMs in 30 s; 200 stream errors in 30 s; 200 "glitches"
/// in a connection's life), and its defaults apply to client connections too. On a connection the
/// gateway opens they would close a healthy upstream connection, and fail every call on it: a gRPC
/// server or nginx ends a stream with RST_STREAM (NO_ERROR) when it answers before the request's
/// end (RFC 9113 §8.1), so a busy upstream sends one per call. An upstream can reset only streams
/// the gateway opened, so a reset costs the gateway no more than the request it sent: these limits
/// are raised out of reach here (`upstreamConfiguration`). The control-frame limit (PING,
/// SETTINGS floods) stays, and so does every protocol check. Connection errors are counted
/// (`portcullis_upstream_http2_connection_errors_total`) and logged with the upstream and reason.
///
/// Flushes are held to the end of the event loop's round (`FlushCoalescingHandler`): a stream's
/// request is written as the client connection reads it, outside this connection's read loop,
/// where swift-nio-http2 would flush each frame on its own.
final class HTTP2UpstreamPool {
    typealias Multiplexer = NIOHTTP2Handler.StreamMultiplexer

    private enum Entry {
        case connecting([(Result<Multiplexer, UpstreamError>) -> Void])
        case ready(Multiplexer, any Channel)
    }

    let eventLoop: any EventLoop
    private var connections: [UpstreamPool.Key: Entry] = [:]
    private let onConnectionError: (HostPort, any Error) -> Void

    /// `onConnectionError` runs on this loop for each connection closed by a connection error.
    init(eventLoop: any EventLoop, onConnectionError: @escaping (HostPort, any Error) -> Void) {
        self.eventLoop = eventLoop
        self.onConnectionError = onConnectionError
    }

    /// swift-nio-http2's configuration for a connection to an upstream: push off, a 64 KiB window,
    /// and the reset, stream-error and glitch limits out of reach (see the type's documentation):
    /// a million resets or stream errors a second, and no lifetime count of glitches.
    static let upstreamConfiguration: NIOHTTP2Handler.Configuration = {
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [HTTP2Setting(parameter: .enablePush, value: 0),
                                      HTTP2Setting(parameter: .initialWindowSize, value: 65_535)]
        connection.maximumConnectionGlitches = Int.max
        var stream = NIOHTTP2Handler.StreamConfiguration()
        // swift-nio-http2 reserves room for `maximumCount` timestamps per connection (8 bytes
        // each), so the limit is a rate over a short window rather than an unbounded count.
        stream.streamResetFrameRateLimit.maximumCount = 10_000
        stream.streamResetFrameRateLimit.windowLength = .milliseconds(10)
        stream.streamErrorRateLimit.maximumCount = 10_000
        stream.streamErrorRateLimit.windowLength = .milliseconds(10)
        return NIOHTTP2Handler.Configuration(connection: connection, stream: stream)
    }()

    /// Opens a stream to `target` whose pipeline `initialize` builds; `completion` runs on this
    /// loop with the stream's channel.
    func openStream(target: UpstreamTarget, settings: UpstreamSettings, initialize: @escaping (any Channel) throws -> Void,
                    completion: @escaping (Result<any Channel, UpstreamError>) -> Void) {
        eventLoop.preconditionInEventLoop()
        multiplexer(target: target, settings: settings) { [eventLoop] result in
            switch result {
            case .failure(let error):
                completion(.failure(error))
            case .success(let multiplexer):
                let created = eventLoop.makePromise(of: (any Channel).self)
                let initializer = NIOLoopBound(initialize, eventLoop: eventLoop)
                multiplexer.createStreamChannel(promise: created) { channel in
                    channel.eventLoop.makeCompletedFuture { try initializer.value(channel) }
                }
                created.futureResult.assumeIsolated().whenComplete { result in
                    completion(result.mapError { .connectFailed("\(target.address): cannot open a stream: \($0)") })
                }
            }
        }
    }

    private func multiplexer(target: UpstreamTarget, settings: UpstreamSettings,
                             _ done: @escaping (Result<Multiplexer, UpstreamError>) -> Void) {
        let key = UpstreamPool.Key(target.address, settings)
        switch connections[key] {
        case .ready(let multiplexer, let channel) where channel.isActive:
            done(.success(multiplexer))
        case .connecting(var waiters):
            waiters.append(done)
            connections[key] = .connecting(waiters)
        case .ready, nil:
            connections[key] = .connecting([done])
            connect(target: target, settings: settings) { [self] result in
                guard case .connecting(let waiters) = connections[key] else { return }
                switch result {
                case .success(let (multiplexer, channel)):
                    connections[key] = .ready(multiplexer, channel)
                    channel.closeFuture.assumeIsolated().whenComplete { [self] _ in
                        if case .ready(_, let current) = connections[key], current === channel { connections[key] = nil }
                    }
                case .failure:
                    connections[key] = nil
                }
                for waiter in waiters { waiter(result.map(\.0)) }
            }
        }
    }

    private func connect(target: UpstreamTarget, settings: UpstreamSettings,
                         completion: @escaping (Result<(Multiplexer, any Channel), UpstreamError>) -> Void) {
        let address = target.address
        let configuration = Self.upstreamConfiguration
        let onConnectionError = NIOLoopBound(self.onConnectionError, eventLoop: eventLoop)
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(settings.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls = settings.tls {
                        try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: settings.tlsServerName ?? UpstreamPool.sniName(address.host)))
                    }
                    try sync.addHandler(FlushCoalescingHandler())
                    // The gateway takes no pushed streams.
                    _ = try sync.configureHTTP2Pipeline(mode: .client, connectionConfiguration: configuration.connection,
                                                        streamConfiguration: configuration.stream) { pushed in pushed.close() }
                    try sync.addHandler(HTTP2ConnectionErrorHandler(linger: nil) { error in onConnectionError.value(address, error) })
                }
            }
        bootstrap.connect(host: address.host, port: address.port).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                do {
                    let multiplexer = try channel.pipeline.syncOperations.handler(type: NIOHTTP2Handler.self).syncMultiplexer()
                    completion(.success((multiplexer, channel)))
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
        for case .ready(_, let channel) in connections.values { channel.close(promise: nil) }
        connections.removeAll()
    }
}
