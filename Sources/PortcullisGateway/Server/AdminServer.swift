import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The node's admin listener (`/metrics`, `/healthz`, `/readyz`): plain NIO, GET only, separate
/// from the public port so it can stay on loopback.
///
/// Whoever reaches it must not be able to slow or starve public traffic: it runs on an event loop
/// of its own (not the public listener's), holds at most `maxConnections` connections (more are
/// closed at once, so they cannot take the process's file descriptors), closes a connection that
/// has not sent a whole request within `requestTimeout` of opening or of its last response, and
/// one that pipelines requests while more than `maxUnsentResponses` responses wait to be taken
/// (a reader that stops reading cannot make responses pile up in memory). A scraper — one
/// request at a time, reading each answer — meets none of these.
final class AdminServer: Sendable {
    typealias Route = @Sendable (_ path: String) -> AdminResponse?

    static let maxConnections = 128
    static let requestTimeout = TimeAmount.seconds(30)
    static let maxUnsentResponses = 4

    private let route: Route
    /// The listener and its event loop, once started.
    private let running: Mutex<(channel: any Channel, group: MultiThreadedEventLoopGroup)?> = Mutex(nil)
    private let connections = Atomic<Int>(0)

    init(route: @escaping Route) {
        self.route = route
    }

    func start(host: String, port: Int) async throws -> SocketAddress {
        let route = self.route
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                let open = connections.wrappingAdd(1, ordering: .relaxed).newValue
                channel.closeFuture.whenComplete { _ in self.connections.wrappingSubtract(1, ordering: .relaxed) }
                guard open <= Self.maxConnections else { return channel.close() }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(AdminHandler(route: route))
                }
            }
        do {
            let server = try await bootstrap.bind(host: host, port: port).get()
            running.withLock { $0 = (server, group) }
            guard let address = server.localAddress else { throw GatewayError.bind("admin \(host):\(port): no local address") }
            return address
        } catch let error as GatewayError {
            try? await group.shutdownGracefully()
            throw error
        } catch {
            try? await group.shutdownGracefully()
            throw GatewayError.bind("admin \(host):\(port): \(error)")
        }
    }

    /// Closes the listener and its connections, and ends its event loop.
    func stop() async {
        guard let (server, group) = running.withLock({ running in defer { running = nil }; return running }) else { return }
        try? await server.close()
        try? await group.shutdownGracefully()
    }
}
