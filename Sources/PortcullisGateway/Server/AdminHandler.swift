import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// One admin connection: answers each request as it ends, closes the connection when a request
/// does not arrive whole in time or responses pile up unread (`AdminServer`).
final class AdminHandler: ChannelInboundHandler {
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
