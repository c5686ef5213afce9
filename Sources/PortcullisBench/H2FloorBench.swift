import ArgumentParser
import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import PortcullisGateway

/// `portcullis-bench h2-floor`: the least work a SwiftNIO HTTP/2 reverse proxy does per request
/// over TLS, run as a subject of the peer harness with `PROTO=h2` next to the gateway
/// (`cluster/bench/h2-floor.sh`). It answers whether the HTTP/2 goals of issue 18 are within
/// reach of swift-nio-http2 and NIOSSL on this machine, and what a gateway gains by handling
/// frames itself rather than through a child channel per stream.
///
/// Each request (a GET) goes to the HTTP/1.1 backend on a kept-alive upstream connection (NIO's
/// request encoder and response decoder; a per-loop idle list, opened on demand) and the response
/// goes back with its status, `content-type` and body — no auth, no routing, no header policy,
/// no limits beyond swift-nio-http2's. Flushes to the client are held to the end of the event
/// loop's round by the gateway's own `FlushCoalescingHandler`. Two ways to carry the streams:
/// - `streams`: swift-nio-http2's multiplexer, a child channel per stream with NIO's
///   HTTP/2-to-HTTP/1 codec and one handler — the gateway's structure today;
/// - `frames`: no multiplexer: one connection handler reads HEADERS frames and writes HEADERS and
///   DATA frames by stream ID. Enough for bodiless GETs with small answers (nothing here sends
///   WINDOW_UPDATE or watches a stream's window), which is what the harness sends.
struct H2FloorBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "h2-floor",
        abstract: "A minimal HTTP/2-over-TLS to HTTP/1.1 proxy on one event loop: the per-request floor of swift-nio-http2 (runs until killed)."
    )

    enum Mode: String, ExpressibleByArgument {
        case streams
        case frames
    }

    @Option(help: "Port to listen on, on 127.0.0.1.")
    var listen: Int

    @Option(help: "Backend as host:port.")
    var backend: String

    @Option(help: "PEM certificate chain.")
    var cert: String

    @Option(help: "PEM private key.")
    var key: String

    @Option(help: "streams (a child channel per stream) or frames (one handler per connection).")
    var mode: Mode = .streams

    func run() throws {
        guard let colon = backend.lastIndex(of: ":"), let backendPort = Int(backend[backend.index(after: colon)...]) else {
            throw ValidationError("--backend must be host:port, got '\(backend)'")
        }
        let upstream = UpstreamTarget(host: String(backend[..<colon]), port: backendPort)
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) },
                                                           privateKey: .file(key))
        tls.applicationProtocols = ["h2"]
        let context = try NIOSSLContext(configuration: tls)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let pool = try loop.submit { NIOLoopBound(FloorPool(target: upstream, eventLoop: loop), eventLoop: loop) }.wait()
        let mode = self.mode
        let server = try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(NIOSSLServerHandler(context: context))
                    try sync.addHandler(FlushCoalescingHandler())
                    let settings = [HTTP2Setting(parameter: .maxConcurrentStreams, value: 100),
                                    HTTP2Setting(parameter: .initialWindowSize, value: 65_535)]
                    switch mode {
                    case .streams:
                        var connection = NIOHTTP2Handler.ConnectionConfiguration()
                        connection.initialSettings = settings
                        _ = try sync.configureHTTP2Pipeline(mode: .server, connectionConfiguration: connection,
                                                            streamConfiguration: .init()) { stream in
                            stream.eventLoop.makeCompletedFuture {
                                try stream.pipeline.syncOperations.addHandlers([
                                    HTTP2FramePayloadToHTTP1ServerCodec(),
                                    FloorStreamHandler(pool: pool.value),
                                ])
                            }
                        }
                    case .frames:
                        try sync.addHandler(NIOHTTP2Handler(mode: .server, initialSettings: settings))
                        try sync.addHandler(FloorFrameHandler(pool: pool.value))
                    }
                }
            }
            .bind(host: "127.0.0.1", port: listen)
            .wait()
        try server.closeFuture.wait()
    }
}

private struct UpstreamTarget {
    let host: String
    let port: Int
}

/// What the backend answered, handed to whoever asked.
private struct FloorResponse {
    var status: HTTPResponseStatus = .ok
    var contentType: String?
    var body: ByteBuffer?
}

/// Kept-alive upstream connections of the one event loop.
private final class FloorPool {
    private let target: UpstreamTarget
    private let eventLoop: any EventLoop
    private var idle: [FloorUpstreamHandler] = []

    init(target: UpstreamTarget, eventLoop: any EventLoop) {
        self.target = target
        self.eventLoop = eventLoop
    }

    /// Sends GET `path` and calls `done` with the answer (nil when the upstream failed).
    func get(_ path: String, done: @escaping (FloorResponse?) -> Void) {
        if let handler = idle.popLast(), handler.isActive {
            handler.send(path, done: done)
            return
        }
        let pool = NIOLoopBound(self, eventLoop: eventLoop)
        ClientBootstrap(group: eventLoop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(HTTPRequestEncoder())
                    try sync.addHandler(ByteToMessageHandler(HTTPResponseDecoder()))
                    try sync.addHandler(FloorUpstreamHandler(pool: pool.value))
                }
            }
            .connect(host: target.host, port: target.port)
            .assumeIsolated()
            .whenComplete { result in
                guard case .success(let channel) = result,
                      let handler = try? channel.pipeline.syncOperations.handler(type: FloorUpstreamHandler.self) else {
                    return done(nil)
                }
                handler.send(path, done: done)
            }
    }

    func release(_ handler: FloorUpstreamHandler) {
        idle.append(handler)
    }
}

/// One upstream connection: one exchange at a time.
private final class FloorUpstreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let pool: FloorPool
    private var context: ChannelHandlerContext?
    private var done: ((FloorResponse?) -> Void)?
    private var response = FloorResponse()
    private var keepAlive = true

    init(pool: FloorPool) {
        self.pool = pool
    }

    var isActive: Bool { context?.channel.isActive ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func send(_ path: String, done: @escaping (FloorResponse?) -> Void) {
        guard let context else { return done(nil) }
        self.done = done
        response = FloorResponse()
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path)
        head.headers.add(name: "host", value: "backend")
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            response.status = head.status
            response.contentType = head.headers.first(name: "content-type")
            keepAlive = head.isKeepAlive
        case .body(var part):
            if response.body == nil { response.body = part } else { response.body!.writeBuffer(&part) }
        case .end:
            let done = self.done
            self.done = nil
            if keepAlive { pool.release(self) } else { context.close(promise: nil) }
            done?(response)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        done?(nil)
        done = nil
        self.context = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// `streams` mode: one stream's request, on its child channel behind NIO's HTTP/2-to-HTTP/1 codec.
private final class FloorStreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let pool: FloorPool

    init(pool: FloorPool) {
        self.pool = pool
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        pool.get(head.uri) { [self] response in
            let context = bound.value
            guard let response else {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http2, status: .badGateway))), promise: nil)
                return context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            }
            var headers = HTTPHeaders()
            if let type = response.contentType { headers.add(name: "content-type", value: type) }
            headers.add(name: "content-length", value: String(response.body?.readableBytes ?? 0))
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http2, status: response.status, headers: headers))), promise: nil)
            if let body = response.body { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}

/// `frames` mode: every stream of one connection, by stream ID, without child channels.
private final class FloorFrameHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private let pool: FloorPool

    init(pool: FloorPool) {
        self.pool = pool
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard case .headers(let block) = frame.payload, let path = block.headers.first(name: ":path") else { return }
        let stream = frame.streamID
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        pool.get(path) { [self] response in
            let context = bound.value
            var headers = HPACKHeaders()
            headers.add(name: ":status", value: String(response?.status.code ?? 502))
            if let type = response?.contentType { headers.add(name: "content-type", value: type) }
            let body = response?.body ?? context.channel.allocator.buffer(capacity: 0)
            headers.add(name: "content-length", value: String(body.readableBytes))
            context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .headers(.init(headers: headers)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .data(.init(data: .byteBuffer(body), endStream: true)))),
                                  promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
