import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A response from an admin endpoint.
public struct AdminResponse: Sendable {
    public var status: HTTPResponseStatus
    public var contentType: String
    public var body: [UInt8]

    public init(status: HTTPResponseStatus, contentType: String, body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    public static func text(_ status: HTTPResponseStatus, _ text: String) -> AdminResponse {
        AdminResponse(status: status, contentType: "text/plain; charset=utf-8", body: Array(text.utf8))
    }
}

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

/// One admin connection: answers each request as it ends, closes the connection when a request
/// does not arrive whole in time or responses pile up unread (`AdminServer`).
private final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let route: AdminServer.Route
    private var head: HTTPRequestHead?
    /// Responses written but not yet taken by the socket.
    private var unsent = 0
    private var deadline: Scheduled<Void>?

    init(route: @escaping AdminServer.Route) {
        self.route = route
    }

    func handlerAdded(context: ChannelHandlerContext) {
        armDeadline(context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    /// The next request must have arrived whole within `requestTimeout`.
    private func armDeadline(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: AdminServer.requestTimeout) {
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head else { return }
            self.head = nil
            guard unsent < AdminServer.maxUnsentResponses else {
                context.close(promise: nil)
                return
            }
            let path = String(head.uri.prefix { $0 != "?" })
            let response: AdminResponse
            if head.method != .GET && head.method != .HEAD {
                response = .text(.methodNotAllowed, "only GET\n")
            } else {
                response = route(path) ?? .text(.notFound, "not found\n")
            }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: response.contentType)
            headers.add(name: "Content-Length", value: String(response.body.count))
            headers.add(name: "Cache-Control", value: "no-store")
            if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: response.status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))), promise: nil)
            let keepAlive = head.isKeepAlive
            unsent += 1
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { [self, context] _ in
                unsent -= 1
                if !keepAlive { context.close(promise: nil) }
            }
            armDeadline(context: context)
        }
    }
}
