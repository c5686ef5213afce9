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
final class AdminServer: Sendable {
    typealias Route = @Sendable (_ path: String) -> AdminResponse?

    private let group: any EventLoopGroup
    private let route: Route
    private let channel: Mutex<(any Channel)?> = Mutex(nil)

    init(group: any EventLoopGroup, route: @escaping Route) {
        self.group = group
        self.route = route
    }

    func start(host: String, port: Int) async throws -> SocketAddress {
        let route = self.route
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(AdminHandler(route: route))
                }
            }
        do {
            let server = try await bootstrap.bind(host: host, port: port).get()
            channel.withLock { $0 = server }
            guard let address = server.localAddress else { throw GatewayError.bind("admin \(host):\(port): no local address") }
            return address
        } catch let error as GatewayError {
            throw error
        } catch {
            throw GatewayError.bind("admin \(host):\(port): \(error)")
        }
    }

    func stop() async {
        let server = channel.withLock { $0 }
        try? await server?.close()
    }
}

private final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let route: AdminServer.Route
    private var head: HTTPRequestHead?

    init(route: @escaping AdminServer.Route) {
        self.route = route
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
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { [context] _ in
                if !keepAlive { context.close(promise: nil) }
            }
        }
    }
}
