import PortcullisConfig
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// How to reach a route's upstream: timeouts, pool size, TLS. Built once per route table.
struct UpstreamSettings: Sendable {
    let connectTimeout: TimeAmount
    let responseHeaderTimeout: TimeAmount
    let idleTimeout: TimeAmount
    let poolIdleTimeout: TimeAmount
    let maxIdlePerTarget: Int
    let ejectFor: Duration
    let tls: NIOSSLContext?
    let tlsServerName: String?
    /// HTTP/2 (`h2` with `tls`, `h2c` without) rather than HTTP/1.1.
    let http2: Bool
}

/// Keep-alive connections to upstream targets, one pool per event loop. All state is confined to
/// that loop: the client connection, its upstream connection and this pool share one thread, so
/// the request path never takes a lock or hops threads to reach an upstream.
final class UpstreamPool {
    /// Which idle connections a route may reuse: same address and the same TLS set-up (a
    /// connection opened without verification must not serve a route that requires it).
    struct Key: Hashable {
        let address: HostPort
        let tls: ObjectIdentifier?
        let serverName: String?

        init(_ address: HostPort, _ settings: UpstreamSettings) {
            self.address = address
            tls = settings.tls.map(ObjectIdentifier.init)
            serverName = settings.tls == nil ? nil : settings.tlsServerName
        }
    }

    let eventLoop: any EventLoop
    /// Each list is an object so that taking and returning a connection mutates it in place: the
    /// dictionary's in-place accessor on an array value allocated a coroutine frame on every call
    /// (three allocations per request in allocation profiles).
    private final class IdleList {
        var connections: [UpstreamConnection] = []
    }
    private var idle: [Key: IdleList] = [:]
    /// The HTTP/2 upstream connections of this event loop, one multiplexed connection per target.
    let http2: HTTP2UpstreamPool

    /// `onHTTP2Fault` runs on this loop for each HTTP/2 upstream connection closed by an error
    /// and each HTTP/2 upstream stream reset for a malformed message (`HTTP2UpstreamPool`).
    init(eventLoop: any EventLoop, onHTTP2Fault: @escaping (HTTP2UpstreamFault) -> Void = { _ in }) {
        self.eventLoop = eventLoop
        self.http2 = HTTP2UpstreamPool(eventLoop: eventLoop, onFault: onHTTP2Fault)
    }

    /// An idle connection to `target` that is still open and not too old, if any.
    func takeIdle(target: UpstreamTarget, settings: UpstreamSettings, now: NIODeadline) -> UpstreamConnection? {
        eventLoop.preconditionInEventLoop()
        let key = Key(target.address, settings)
        // Mutated in place: copying the list out and back would copy it on every request.
        guard let list = idle[key] else { return nil }
        while let connection = list.connections.popLast() {
            if connection.isUsable, now - connection.idleSince < settings.poolIdleTimeout {
                return connection
            }
            connection.close()
        }
        return nil
    }

    /// Opens a fresh connection to `target`; `completion` runs on this pool's event loop.
    func connect(target: UpstreamTarget, settings: UpstreamSettings,
                 completion: @escaping (Result<UpstreamConnection, UpstreamError>) -> Void) {
        eventLoop.preconditionInEventLoop()
        let address = target.address
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(settings.connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                do {
                    let sync = channel.pipeline.syncOperations
                    if let tls = settings.tls {
                        let handler = try NIOSSLClientHandler(context: tls, serverHostname: settings.tlsServerName ?? Self.sniName(address.host))
                        try sync.addHandler(handler)
                    }
                    try sync.addHandler(UpstreamHandler(idleTimeout: settings.idleTimeout))
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
        bootstrap.connect(host: address.host, port: address.port).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                do {
                    let sync = channel.pipeline.syncOperations
                    let handler = try sync.handler(type: UpstreamHandler.self)
                    let context = try sync.context(handlerType: UpstreamHandler.self)
                    let connection = UpstreamConnection(channel: channel, handler: handler, context: context, target: target,
                                                        poolKey: Key(address, settings))
                    // Set once per connection; the handler drops it when the channel closes (so
                    // only while it is open, or the connection → closure cycle would never break).
                    if channel.isActive { handler.onIdleClose = { [self] in forget(connection) } }
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

    /// Returns a connection after a complete exchange; it is closed instead when the pool is full.
    func release(_ connection: UpstreamConnection, settings: UpstreamSettings, now: NIODeadline = .now()) {
        eventLoop.preconditionInEventLoop()
        connection.handler.endExchange()
        guard connection.isUsable, settings.maxIdlePerTarget > 0 else {
            connection.close()
            return
        }
        let list: IdleList
        if let existing = idle[connection.poolKey] {
            list = existing
        } else {
            list = IdleList()
            idle[connection.poolKey] = list
        }
        guard list.connections.count < settings.maxIdlePerTarget else {
            connection.close()
            return
        }
        connection.exchanges += 1
        connection.idleSince = now
        list.connections.append(connection)
    }

    /// An idle connection closed: drop it from its list.
    private func forget(_ connection: UpstreamConnection) {
        idle[connection.poolKey]?.connections.removeAll { $0 === connection }
    }

    /// Closes the idle HTTP/1.1 connections (the overload guard: each holds its buffers, and a
    /// burst of requests leaves hundreds, which `pool_idle_timeout` would drop only when asked for
    /// one). HTTP/2 connections carry other requests' streams and stay.
    func closeIdle() {
        for list in idle.values {
            for connection in list.connections { connection.close() }
        }
        idle.removeAll()
    }

    /// Closes every idle connection (shutdown).
    func closeAll() {
        http2.closeAll()
        closeIdle()
    }

    static func sniName(_ host: String) -> String? {
        // SNI must be a DNS name, never an IP literal (RFC 6066 §3).
        let isIP = host.contains(":") || host.split(separator: ".").allSatisfy { UInt8($0) != nil }
        return isIP ? nil : host
    }
}
