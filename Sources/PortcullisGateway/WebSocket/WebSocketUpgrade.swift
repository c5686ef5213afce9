import Crypto
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import PortcullisJOSE

/// Opens the upstream side of an admitted WebSocket upgrade: a fresh connection to one of the
/// route's targets (never a pooled one: it becomes the WebSocket's), the rewritten request head
/// with `Upgrade`, `Connection` and the `Sec-WebSocket-*` fields, then the upstream's answer. On
/// 101 both connections hand their bytes to a `WebSocketRelay`, which joins them; any other
/// answer is passed to the client as a normal response and the connection closes.
final class WebSocketUpgrade {
    private let downstream: any WebSocketDownstream
    private let route: CompiledRoute
    private let settings: WebSocketRouteConfig
    private let head: UpstreamRequestHead
    private let requestID: String
    private let clientVersion: HTTPVersion
    private var log: RequestLog
    private let sessions: LiveSessions
    private let token: VerifiedToken?
    /// The client connection, when its certificate admitted the upgrade (`LiveSessions.open`).
    private let certificate: HeaderRewriter.ClientInfo?
    private let eventLoop: any EventLoop
    private let metrics: GatewayMetrics
    /// The `Sec-WebSocket-Accept` the upstream must answer with when the gateway made the key
    /// (a WebSocket over HTTP/2 has none of its own): the gateway is then the upstream's
    /// WebSocket client and checks it. Nil when the client's key is passed on (HTTP/1.1): the
    /// client checks the answer itself.
    private let expectedAccept: String?
    /// The client left before the upstream answered (`cancel()`).
    private var cancelled = false
    /// The upstream connection from the moment it is made (before its connect completes), so a
    /// cancel stops a connect still under way; several while NIO tries a name's addresses.
    private var upstreamChannels: [any Channel] = []
    /// The largest non-101 response body passed on; a larger one is a 502.
    static let maxRefusalBody = 64 * 1024

    init(downstream: any WebSocketDownstream, route: CompiledRoute, settings: WebSocketRouteConfig, head: UpstreamRequestHead,
         requestID: String, clientVersion: HTTPVersion, log: RequestLog, sessions: LiveSessions, token: VerifiedToken?,
         certificate: HeaderRewriter.ClientInfo?, eventLoop: any EventLoop, metrics: GatewayMetrics, expectedAccept: String? = nil) {
        self.expectedAccept = expectedAccept
        self.certificate = certificate
        self.downstream = downstream
        self.route = route
        self.settings = settings
        self.head = head
        self.requestID = requestID
        self.clientVersion = clientVersion
        self.log = log
        self.sessions = sessions
        self.token = token
        self.eventLoop = eventLoop
        self.metrics = metrics
    }

    /// The head the upstream gets: the rewritten one (hop-by-hop fields removed) with the upgrade
    /// stated again.
    static func upstreamHead(_ rewritten: UpstreamRequestHead) -> UpstreamRequestHead {
        var head = rewritten
        head.fields.removeAll { HeaderNameSet.matches($0.name, "content-length") }
        head.fields.append(("Upgrade", "websocket"))
        head.fields.append(("Connection", "Upgrade"))
        return head
    }

    /// A fresh `Sec-WebSocket-Key` (16 random bytes, base64; RFC 6455 §4.1).
    static func makeKey() -> String {
        var generator = SystemRandomNumberGenerator()
        return base64((0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
    }

    /// The `Sec-WebSocket-Accept` a server answers `key` with (RFC 6455 §4.2.2).
    static func accept(for key: String) -> String {
        base64(Array(Insecure.SHA1.hash(data: Array((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8))))
    }

    /// Base64 with the standard alphabet and padding (RFC 4648 §4), which the handshake fields use.
    private static func base64(_ bytes: [UInt8]) -> String {
        let url = Base64URL.encode(bytes).map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 }
        return String(url) + String(repeating: "=", count: (4 - url.count % 4) % 4)
    }

    func start() {
        let now = NIODeadline.now()
        guard let target = route.selector.pick(now: now) else {
            return fail(.badGateway, "no upstream target")
        }
        log.tries(target.label)
        let upstream = route.upstream
        let address = target.address
        // The initializer runs on this event loop (the bootstrap's only one).
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(upstream.connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let upgrade = bound.value
                    guard !upgrade.cancelled else { throw ChannelError.ioOnClosedChannel }
                    upgrade.upstreamChannels.append(channel)
                    let sync = channel.pipeline.syncOperations
                    if let tls = upstream.tls {
                        try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: upstream.tlsServerName ?? UpstreamPool.sniName(address.host)))
                    }
                }
            }
        bootstrap.connect(host: address.host, port: address.port).assumeIsolated().whenComplete { [self] result in
            switch result {
            case .success(let channel):
                upstreamChannels = [channel]
                guard !cancelled else { return channel.close(promise: nil) }
                target.markHealthy()
                handshake(on: channel)
            case .failure(let error):
                upstreamChannels = []
                // A connect the client's leaving stopped says nothing of the target.
                guard !cancelled else { return }
                target.eject(for: upstream.ejectFor, now: .now())
                let failure = UpstreamError.connecting(to: address, error)
                metrics.upstreamFailure(route: route.config.name, kind: failure.kind)
                fail(failure.clientAnswer.status, failure.isTimeout ? "the upstream did not accept the connection in time" : "the upstream could not be reached")
            }
        }
    }

    private func handshake(on channel: any Channel) {
        let handler = HandshakeHandler(upgrade: self, timeout: route.upstream.responseHeaderTimeout)
        let request = HTTPRequestHead(version: .http1_1, method: head.method, uri: head.uri, headers: HTTPHeaders(head.fields))
        do {
            // NIO's encoder, and its decoder told of the request (a 101 ends the HTTP part of the
            // connection) without watching writes (`HandshakeResponseDecoder`).
            let sync = channel.pipeline.syncOperations
            try sync.addHandler(HTTPRequestEncoder())
            try sync.addHandler(ByteToMessageHandler(HandshakeResponseDecoder(request: request)))
            try sync.addHandler(handler)
        } catch {
            channel.close(promise: nil)
            return fail(.badGateway, "the upstream connection could not be set up")
        }
        channel.write(HTTPClientRequestPart.head(request), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    }

    /// The client left during the handshake: the upstream connection (or the attempt to open it)
    /// is closed now rather than when the upstream answers, and the client hears nothing more.
    func cancel() {
        cancelled = true
        for channel in upstreamChannels { channel.close(promise: nil) }
        upstreamChannels = []
    }

    fileprivate func fail(_ status: HTTPResponseStatus, _ description: String) {
        guard !cancelled else { return }
        log.reason = "websocket_upstream"
        downstream.webSocketFailed(ErrorResponse(status: status, error: status == .gatewayTimeout ? "upstream_timeout" : "bad_gateway",
                                                 description: description),
                                   log: log, route: route)
    }

    /// An upstream's answer of up to NIO's 80 KB head limit, which the client's HTTP/2 stream
    /// cannot carry: a 502 for that stream alone (sent, it would fail the client's connection).
    private func failTooLarge() {
        failMalformed("the upstream's answer to the WebSocket handshake is too large for one HTTP/2 frame")
    }

    /// An answer the gateway will not pass on: a 502, counted as the upstream's protocol error.
    fileprivate func failMalformed(_ description: String) {
        metrics.upstreamFailure(route: route.config.name, kind: UpstreamError.protocolError("").kind)
        fail(.badGateway, description)
    }

    /// The upstream's answer, as NIO's decoder read it.
    fileprivate func answered(_ response: HTTPResponseHead, body: ByteBuffer, upstream: ChannelHandlerContext) {
        upstreamChannels = []
        guard !cancelled else { return upstream.close(promise: nil) }
        var head = ClientResponseHead(version: clientVersion, status: response.status, contentLength: nil)
        // The fields the upstream names in `Connection` are its own hop's (RFC 9110 §7.6.1), as on
        // any response.
        let listed = HeaderRewriter.connectionListed(response.headers)
        for (name, value) in response.headers {
            if route.headerPolicy.removesFromResponse(name.utf8) || HeaderNameSet.matches(name, "content-length")
                || listed?.contains(name) == true { continue }
            head.fields.append((name, value))
        }
        head.fields.append(contentsOf: route.config.responseHeaders.setFields)
        head.fields.append(("X-Request-Id", requestID))
        guard response.status == .switchingProtocols else {
            // NIO's decoder takes `chunked` off and leaves any other coding on the body, and
            // `Transfer-Encoding` is hop by hop: such a body would reach the client with its
            // coding undeclared. As on any response, a coding other than one `chunked` is a 502.
            var codings = TransferCodings()
            for value in response.headers[canonicalForm: "transfer-encoding"] { codings.add(value.utf8) }
            if codings.present, !codings.isOneChunked, response.status != .noContent, response.status != .notModified {
                upstream.close(promise: nil)
                return failMalformed("the upstream's answer to the WebSocket handshake uses a transfer coding other than chunked")
            }
            // A 204 states no length (RFC 9110 §8.6); a 304's would be the representation's.
            head.contentLength = response.status == .noContent || response.status == .notModified ? nil : body.readableBytes
            head.fields.append(("Connection", "close"))
            upstream.close(promise: nil)
            guard downstream.webSocketCanCarry(head) else { return failTooLarge() }
            return downstream.webSocketRefused(head, body: body, log: log, route: route)
        }
        if let expectedAccept, response.headers[canonicalForm: "sec-websocket-accept"] != [Substring(expectedAccept)] {
            upstream.close(promise: nil)
            return fail(.badGateway, "the upstream's WebSocket handshake answer does not match the key it was sent")
        }
        head.fields.append(("Upgrade", "websocket"))
        head.fields.append(("Connection", "Upgrade"))
        guard downstream.webSocketClientConnected else {
            upstream.close(promise: nil)
            return
        }
        guard downstream.webSocketCanCarry(head) else {
            upstream.close(promise: nil)
            return failTooLarge()
        }

        // The session's callback reaches the relay made after it; the cycle through it ends with
        // the session (`LiveSession.end` drops the callback).
        var relayReference: WebSocketRelay?
        let session = sessions.open(protocol: .websocket, token: token, policy: route.config.onTokenEnd, certificate: certificate,
                                    eventLoop: eventLoop) { end in relayReference?.tokenEnded(end) }
        let relay = WebSocketRelay(session: session, idleTimeout: TimeAmount(settings.idleTimeout), maxLifetime: TimeAmount(settings.maxLifetime),
                                   maxFrameBytes: settings.maxFrameBytes)
        relayReference = relay
        // The client side first: frames the upstream sent along with its 101 are relayed as soon
        // as the upstream side is in place.
        downstream.webSocketAccepted(head, log: log, route: route) { client in
            try client.addHandler(WebSocketSideHandler(side: .client, relay: relay))
        }
        do {
            // The relay's handler after NIO's HTTP ones, which are then removed: the decoder's
            // left-over bytes (frames that came with the 101) reach the relay.
            let sync = upstream.pipeline.syncOperations
            try sync.addHandler(WebSocketSideHandler(side: .upstream, relay: relay))
            sync.removeHandler(context: upstream, promise: nil)
            sync.removeHandler(context: try sync.context(handlerType: ByteToMessageHandler<HandshakeResponseDecoder>.self), promise: nil)
            sync.removeHandler(context: try sync.context(handlerType: HTTPRequestEncoder.self), promise: nil)
        } catch {
            relay.close(code: .unexpectedServerError, reason: "upstream connection failed", end: .protocolError)
            upstream.close(promise: nil)
        }
    }
}

/// Reads the upstream's answer to the upgrade request: a 101 head (the decoder stops after it),
/// or another response whole (up to `WebSocketUpgrade.maxRefusalBody`).
private final class HandshakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    private var upgrade: WebSocketUpgrade?
    private let timeout: TimeAmount
    private var timer: Scheduled<Void>?
    private var head: HTTPResponseHead?
    private var body = ByteBuffer()
    /// Informational heads so far (limited as on any response: `UpstreamResponseParser.maxInterimHeads`).
    private var interimHeads = 0

    init(upgrade: WebSocketUpgrade, timeout: TimeAmount) {
        self.upgrade = upgrade
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            finish(context)?.fail(.gatewayTimeout, "the upstream did not answer the WebSocket handshake in time")
            context.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let received) where received.status.code != 101 && (100..<200).contains(received.status.code):
            interimHeads += 1
            guard interimHeads <= UpstreamResponseParser.maxInterimHeads else {
                finish(context)?.failMalformed("the upstream sent more than \(UpstreamResponseParser.maxInterimHeads) interim (1xx) answers to the WebSocket handshake")
                context.close(promise: nil)
                return
            }
        case .head(let received):
            head = received
        case .body(var part):
            guard body.readableBytes + part.readableBytes <= WebSocketUpgrade.maxRefusalBody else {
                finish(context)?.fail(.badGateway, "the upstream's answer to the WebSocket handshake is too large")
                context.close(promise: nil)
                return
            }
            body.writeBuffer(&part)
        case .end:
            guard let head, let upgrade = finish(context) else { return }
            upgrade.answered(head, body: body, upstream: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(context)?.fail(.badGateway, "the upstream closed the connection during the WebSocket handshake")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(context)?.fail(.badGateway, "the upstream's answer to the WebSocket handshake is not valid HTTP")
        context.close(promise: nil)
    }

    /// The upgrade, handed out once.
    private func finish(_ context: ChannelHandlerContext) -> WebSocketUpgrade? {
        timer?.cancel()
        timer = nil
        defer { upgrade = nil }
        return upgrade
    }
}
