import NIOCore
import NIOHTTP2
import NIOPosix
import NIOSSL

/// HTTP/2 connections to upstreams (`upstream.protocol: h2` or `h2c`) for one event loop: one
/// multiplexed connection per target and TLS set-up, opened on first use and shared by every
/// stream to that target from this loop (swift-nio-http2 queues streams beyond the upstream's
/// SETTINGS_MAX_CONCURRENT_STREAMS until one ends). A connection that closes is forgotten and the
/// next stream opens a new one. Confined to the event loop, like `UpstreamPool`.
final class HTTP2UpstreamPool {
    typealias Multiplexer = NIOHTTP2Handler.StreamMultiplexer

    private enum Entry {
        case connecting([(Result<Multiplexer, UpstreamError>) -> Void])
        case ready(Multiplexer, any Channel)
    }

    let eventLoop: any EventLoop
    private var connections: [UpstreamPool.Key: Entry] = [:]

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

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
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        // The gateway takes no pushed streams.
        connection.initialSettings = [HTTP2Setting(parameter: .enablePush, value: 0),
                                      HTTP2Setting(parameter: .initialWindowSize, value: 65_535)]
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(settings.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls = settings.tls {
                        try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: settings.tlsServerName ?? UpstreamPool.sniName(address.host)))
                    }
                    _ = try sync.configureHTTP2Pipeline(mode: .client, connectionConfiguration: connection,
                                                        streamConfiguration: .init()) { pushed in pushed.close() }
                    try sync.addHandler(HTTP2ConnectionErrorHandler(linger: nil) {})
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
