import NIOCore
import PortcullisJOSE
import NIOHTTP1
import NIOPosix
import Synchronization

/// A real HTTP server on a loopback port playing an issuer's JWKS (and discovery) endpoint.
/// Tests change what it serves, make it fail or slow, and count requests.
final class JWKSServer: Sendable {
    struct Behaviour: Sendable {
        var jwks: [UInt8] = Array(#"{"keys":[]}"#.utf8)
        var status: HTTPResponseStatus = .ok
        var cacheControl: String?
        var delay: TimeAmount = .zero
        /// The head at once, the body this much later (a body trickled or held back).
        var bodyDelay: TimeAmount = .zero
        var discoveryIssuer = Fixture.issuer
        /// When set, the JWKS path answers 302 to this URL instead.
        var redirect: String?
    }

    final class State: Sendable {
        let behaviour = Mutex(Behaviour())
        let jwksRequests = Atomic<Int>(0)
        let port = Atomic<Int>(0)
    }

    private let state = State()
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    let port: Int

    var jwksURL: String { "http://127.0.0.1:\(port)/jwks.json" }
    var discoveryURL: String { "http://127.0.0.1:\(port)/.well-known/openid-configuration" }
    /// Requests for the JWKS document so far.
    var requests: Int { state.jwksRequests.load(ordering: .relaxed) }

    init() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let state = self.state
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(Handler(state: state))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        self.group = group
        self.channel = channel
        self.port = channel.localAddress?.port ?? 0
        state.port.store(self.port, ordering: .relaxed)
    }

    func update(_ change: (inout Behaviour) -> Void) { state.behaviour.withLock { change(&$0) } }

    func stop() async throws {
        try await channel.close()
        try await group.shutdownGracefully()
    }

    private final class Handler: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let state: State

        init(state: State) { self.state = state }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .head(let head) = unwrapInboundIn(data) else { return }
            let behaviour = state.behaviour.withLock { $0 }
            let body: [UInt8]
            var status = behaviour.status
            if head.uri.hasSuffix("openid-configuration") {
                let port = state.port.load(ordering: .relaxed)
                body = Array(JSONWriter.serialize([
                    "issuer": .string(behaviour.discoveryIssuer), "jwks_uri": .string("http://127.0.0.1:\(port)/jwks.json"),
                ]).utf8)
            } else if head.uri == "/jwks.json", behaviour.redirect != nil {
                body = []
                status = .found
            } else if head.uri == "/jwks.json" {
                state.jwksRequests.add(1, ordering: .relaxed)
                body = behaviour.jwks
            } else {
                body = []
                status = .notFound
            }
            var headers = HTTPHeaders([("content-type", "application/json"), ("content-length", "\(body.count)")])
            if let cacheControl = behaviour.cacheControl { headers.add(name: "cache-control", value: cacheControl) }
            if status == .found, let location = behaviour.redirect { headers.add(name: "location", value: location) }
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            let responseHead = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
            let bodyDelay = behaviour.bodyDelay
            let respond: @Sendable () -> Void = {
                let context = loopBound.value
                context.writeAndFlush(NIOAny(HTTPServerResponsePart.head(responseHead)), promise: nil)
                let sendBody: @Sendable () -> Void = {
                    let context = loopBound.value
                    context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
                    context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: nil)
                }
                if bodyDelay == .zero { sendBody() } else { context.eventLoop.scheduleTask(in: bodyDelay, sendBody) }
            }
            if behaviour.delay == .zero { respond() } else { context.eventLoop.scheduleTask(in: behaviour.delay, respond) }
        }
    }
}
