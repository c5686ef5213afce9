import NIOCore
import NIOHTTP1
import NIOHTTP2

/// One HTTP/2 stream of a client connection, which carries one request: `Admission` decides on
/// its head, an `UpstreamExchange` forwards it to an HTTP/1.1 upstream or an
/// `HTTP2UpstreamExchange` to an HTTP/2 one (trailers included: gRPC), and the response goes back
/// on the stream as `HTTPServerResponsePart`s, which swift-nio-http2's
/// `HTTP2FramePayloadToHTTP1ServerCodec` (before this handler) turns into HEADERS and DATA frames.
///
/// Flow control runs end to end: this stream's reads are held while the upstream connection
/// cannot take more bytes — a stream channel that is not read sends no WINDOW_UPDATE, so the
/// client stops — and the upstream's reads stop while the stream is not writable (the client's
/// window is spent). A refusal or failure of a gRPC request is answered in gRPC's shape
/// (`GRPCStatus`).
///
/// A WebSocket over HTTP/2 (RFC 8441: an extended CONNECT with `:protocol: websocket`) is
/// admitted as a GET on a `websocket` route and opened upstream as an HTTP/1.1 upgrade with a key
/// the gateway makes (`WebSocketUpgrade`); once the upstream accepts, the stream answers 200 and
/// this handler gives way to a `WebSocketStreamBridge` and the relay's side handler. Confined to
/// the connection's event loop.
final class HTTP2StreamHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case waitingForHead
        /// The gateway answered; the rest of the request is dropped.
        case answered
        case proxying(UpstreamExchange)
        case proxyingHTTP2(HTTP2UpstreamExchange)
        /// A WebSocket's upstream handshake is under way; the stream's reads are held.
        case upgrading(WebSocketUpgrade)
        case done
    }

    private let shared: HTTP2ConnectionShared
    private var state = State.waitingForHead
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private var requestEnded = false
    private var isGRPC = false
    private var responseHeadSent = false
    /// The stream's request was admitted with a token and its route closes on token end: watched
    /// so that the stream ends with its token (`LiveSessions`).
    private var session: LiveSession?
    /// The stream was admitted with a token its route ends it with (`on_token_end: close`), or on
    /// a client certificate: then a gRPC call's idle client stream is no reason to cut it.
    private var callEndsWithAdmission = false
    /// The `:protocol` of an extended CONNECT (`HTTP2ExtendedConnect`), seen before its head.
    private var extendedConnect: String?
    /// What the client sent on a WebSocket stream before its upstream accepted (at most the
    /// stream's window: reads are held meanwhile), handed to the bridge.
    private var earlyData: [ByteBuffer] = []
    /// The `limits.max_connections` slot a WebSocket holds from its admission until it is refused,
    /// fails or its stream closes.
    private var webSocketSlot: ConnectionSlot?
    /// The stream's request, to an HTTP/1.1 upstream, holds an upstream connection of its own: it
    /// counts toward `limits.max_connections` until its exchange ends or the stream closes (an
    /// HTTP/1.1 client connection holds one upstream connection at a time; an HTTP/2 one could
    /// hold a hundred). Not until the stream closes: a client that never opens its window for the
    /// last bytes of a small response keeps the stream open, not an upstream connection.
    private var countsAsConnection = false
    /// DATA frames held during a handshake: the stream's window bounds their bytes, this their
    /// number (a window's worth of 1-byte frames would otherwise be as many buffers).
    private static let maxEarlyParts = 64
    /// The request body's bytes so far, and once the gateway first waits for more of it, the
    /// minimum rate they keep to (`limits.request_body_min_rate`). Not for gRPC calls to an HTTP/2
    /// upstream: a client stream may rightly be idle for as long as its call lasts.
    private var requestBodyBytes = 0
    private var bodyRate: RequestBodyRate?
    /// Whether the response-write deadline runs (`limits.response_write_timeout`).
    private var responseWriteDeadline = HTTP2ResponseWriteDeadline()
    /// The response body's small writes, joined while the client is behind (`SmallWrites`).
    private var responseWrites = SmallWrites()
    /// A read's request-body parts for an HTTP/1.1 upstream, joined into one write
    /// (`HTTP2RequestBodyJoiner`; the HTTP/2 upstream's exchange joins its own).
    private var requestJoiner = HTTP2RequestBodyJoiner()

    init(shared: HTTP2ConnectionShared) {
        self.shared = shared
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // The connection's deadlines hold this handler while one of its deadlines is armed, and
        // the body rate while it runs.
        shared.deadlines.cancelAll(self)
        bodyRate?.stop()
        bodyRate = nil
        self.context = nil
    }

    // MARK: Request

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard case .waitingForHead = state else { return }
            handleHead(head)
        case .body(let body):
            requestBodyBytes += body.readableBytes
            bodyRate?.bodyReceived(bytes: body.readableBytes)
            switch state {
            case .proxying(let exchange): if let joined = requestJoiner.add(body) { exchange.clientBody(joined) }
            case .proxyingHTTP2(let exchange): exchange.clientBody(body)
            case .upgrading: if earlyData.count < Self.maxEarlyParts { earlyData.append(body) } else { context.close(promise: nil) }
            default: break
            }
        case .end:
            requestEnded = true
            bodyRate?.endReceived()
            switch state {
            case .proxying(let exchange):
                if let joined = requestJoiner.take() { exchange.clientBody(joined) }
                exchange.clientEnd()
            case .proxyingHTTP2(let exchange): exchange.clientEnd()
            default: break
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let connect = event as? HTTP2ExtendedConnect {
            extendedConnect = connect.protocolName
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func handleHead(_ clientHead: HTTPRequestHead) {
        let start = NIODeadline.now()
        var head = clientHead
        var facts = RequestHeadFacts(head.headers)
        let requestID = RequestID.accept(facts.requestID) ?? RequestID.generate()
        var unsupportedProtocol = false
        if let extendedConnect {
            // RFC 8441: the tunnel's protocol is WebSocket or nothing the gateway carries. It is
            // routed and admitted as the GET its HTTP/1.1 upgrade would be.
            unsupportedProtocol = extendedConnect.lowercased() != "websocket"
            head.method = .GET
            facts.upgradesToWebSocket = true
            facts.extendedConnect = true
        }
        // A WebSocket's refusals are HTTP answers whatever its content-type says: a gRPC-shaped 200
        // would tell an extended CONNECT's client its tunnel is open.
        isGRPC = !facts.extendedConnect && GRPCStatus.isGRPC(contentType: head.headers.first(name: "content-type"))
        var log = RequestLog(requestID: requestID, method: clientHead.method.rawValue, target: head.uri, start: start)
        let table = shared.routeTable()
        if unsupportedProtocol {
            // `admit` names the client and host on every other line.
            log.host = facts.host
            log.client = shared.admission.client.requestAddress(head.headers)
        }
        let decision: Admission.Decision = if unsupportedProtocol {
            .refused(ErrorResponse(status: .badRequest, error: "invalid_request", description: "an extended CONNECT may only open a WebSocket"),
                     metrics: shared.gateway.unmatchedRoute)
        } else {
            shared.admission.admit(head, facts: facts, table: table, log: &log, clientCertificate: clientCertificateThumbprint)
        }
        switch decision {
        case .refused(let response, let metrics):
            state = .answered
            log.status = Int(response.status.code)
            log.reason = log.reason ?? response.error
            log.bytesOut = answer(response, requestID: requestID, isHEAD: head.method == .HEAD)
            shared.gateway.record(log, metrics: metrics, upstreamTime: nil, now: .now(), counter: &shared.responseCounter)
            // GOAWAY through the connection manager, as on drain: open streams may finish.
            if response.closesConnection { context?.channel.parent?.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        case .admitted(let admitted):
            if facts.extendedConnect, let settings = admitted.route.config.websocket {
                return startWebSocket(admitted, settings: settings, head: head, facts: facts, log: log)
            }
            let upstreamHead = HeaderRewriter.upstreamRequest(head, uri: admitted.target.uri, policy: admitted.route.headerPolicy,
                                                              identity: admitted.identity, requestID: requestID, client: shared.client,
                                                              hasAmbiguousNames: facts.hasAmbiguousNames)
            if !admitted.route.upstream.http2 {
                guard shared.connections.acquire() else {
                    return refuseOverConnectionLimit(route: admitted.route, log: log, isHEAD: head.method == .HEAD)
                }
                countsAsConnection = true
            }
            if facts.expectsContinue {
                context?.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http2, status: .continue))), promise: nil)
            }
            watchToken(admitted)
            if admitted.route.upstream.http2 {
                let exchange = HTTP2UpstreamExchange(downstream: self, pool: shared.pool, route: admitted.route, clientHead: head,
                                                     upstreamHead: upstreamHead,
                                                     log: log, extraResponseHeaders: admitted.responseHeaders)
                state = .proxyingHTTP2(exchange)
                exchange.start()
            } else {
                let exchange = UpstreamExchange(downstream: self, route: admitted.route, clientHead: head, upstreamHead: upstreamHead,
                                                log: log, extraResponseHeaders: admitted.responseHeaders)
                state = .proxying(exchange)
                exchange.start()
            }
        }
    }

    /// The SHA-256 of the connection's verified client certificate (the TLS handler is on the
    /// connection, this stream's parent), nil without one.
    private func clientCertificateThumbprint() -> [UInt8]? {
        guard let connection = context?.channel.parent else { return nil }
        return shared.client.clientCertificateThumbprint(channel: connection)
    }

    // MARK: Responses the gateway writes itself

    /// Writes a response the gateway composed itself; returns the body bytes written.
    @discardableResult
    private func answer(_ response: ErrorResponse, requestID: String, isHEAD: Bool) -> Int {
        guard let context else { return 0 }
        let answer = HTTP2GatewayAnswer(response, requestID: requestID, isGRPC: isGRPC, isHEAD: isHEAD, allocator: context.channel.allocator)
        context.write(wrapOutboundOut(.head(answer.head)), promise: nil)
        if let body = answer.body { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        endResponse(trailers: answer.trailers)
        return answer.bodyBytes
    }

    /// `limits.max_connections` is reached: 503 with `Retry-After: 1` (`UNAVAILABLE` for gRPC),
    /// counted with the connections refused.
    private func refuseOverConnectionLimit(route: CompiledRoute, log: RequestLog, isHEAD: Bool) {
        state = .answered
        shared.gateway.metrics.rejectedConnections.increment()
        var log = log
        var response = ErrorResponse(status: .serviceUnavailable, error: "too_many_connections",
                                     description: "the gateway's connection limit is reached")
        response.headers.add(name: "Retry-After", value: "1")
        log.status = 503
        log.reason = response.error
        log.bytesOut = answer(response, requestID: log.requestID, isHEAD: isHEAD)
        shared.gateway.record(log, metrics: route.metrics, upstreamTime: nil, now: .now(), counter: &shared.responseCounter)
    }

    /// Ends the response; a request still sending its body is then ended with RST_STREAM
    /// NO_ERROR (`HTTP2EarlyResponseReset`), so the client stops sending what nobody reads and
    /// takes the response as complete.
    private func endResponse(trailers: HTTPHeaders?) {
        guard let context else { return }
        if let held = responseWrites.drain() { context.write(wrapOutboundOut(.body(.byteBuffer(held))), promise: nil) }
        // The stream stays open until the client has taken the response's last bytes: one that
        // never opens its window would keep it, and what waits on it, for good. Cancelled when
        // the stream closes (`handlerRemoved`).
        apply(responseWriteDeadline.responseEnded())
        if requestEnded {
            context.writeAndFlush(wrapOutboundOut(.end(trailers)), promise: nil)
        } else {
            context.writeAndFlush(wrapOutboundOut(.end(trailers))).assumeIsolated().whenComplete { result in
                // An end that could not be written leaves the response incomplete: CANCEL, not NO_ERROR.
                guard case .success = result else { return context.close(promise: nil) }
                // Added only now, at the front of the stream's pipeline: most streams never need it.
                do {
                    try context.pipeline.syncOperations.addHandler(HTTP2EarlyResponseReset(), position: .first)
                    context.triggerUserOutboundEvent(HTTP2EarlyResponseReset.request, promise: nil)
                } catch {
                    context.close(promise: nil)
                }
            }
        }
    }

    // MARK: Backpressure and stream events

    func channelReadComplete(context: ChannelHandlerContext) {
        switch state {
        case .proxying(let exchange): if let joined = requestJoiner.take() { exchange.clientBody(joined) }
        case .proxyingHTTP2(let exchange): exchange.clientReadComplete()
        default: break
        }
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        guard upstreamTakesBytes else {
            pendingRead = true
            return
        }
        readIssued()
        context.read()
    }

    /// A read goes to the client's stream: while its request body is under way, the gateway
    /// waits for the client from now on (`RequestBodyRate`). The rate is set up at the first such
    /// read, so a request whose end came with its head costs nothing.
    private func readIssued() {
        if let bodyRate { return bodyRate.readIssued() }
        guard !requestEnded, let limit = shared.bodyRate else { return }
        switch state {
        // A gRPC call's client stream may rightly be idle for as long as the call lasts — when
        // the call ends with what admitted it (`callEndsWithAdmission`).
        // Anyone may say `application/grpc`: on a public route the rate holds, or idle "calls"
        // would hold the upstream's streams for good. A gRPC content-type on a route to an
        // HTTP/1.1 upstream is no gRPC call, and no way past the rate either.
        case .proxying: break
        case .proxyingHTTP2: if isGRPC, callEndsWithAdmission { return }
        default: return
        }
        let rate = RequestBodyRate(minimumRate: limit.minimumRate, grace: limit.grace,
                                   deadline: shared.deadlines.slot(for: self, .requestBody)) { [self] in requestBodyTooSlow() }
        rate.headReceived()
        if requestBodyBytes > 0 { rate.bodyReceived(bytes: requestBodyBytes) }
        bodyRate = rate
        rate.readIssued()
    }

    /// The request body fell below the minimum rate: 408 before the response began (the stream is
    /// then reset, NO_ERROR, as the client is still sending), the stream cut after; the upstream
    /// request is cut either way.
    private func requestBodyTooSlow() {
        shared.gateway.metrics.slowRequestBodies.increment()
        switch state {
        case .proxying(let exchange): exchange.clientBodyTooSlow()
        case .proxyingHTTP2(let exchange): exchange.clientBodyTooSlow()
        default: context?.close(promise: nil)
        }
    }

    /// Whether the request's body may be read on: no exchange, or its upstream can take bytes.
    private var upstreamTakesBytes: Bool {
        switch state {
        case .proxying(let exchange): exchange.upstreamWritable
        case .proxyingHTTP2(let exchange): exchange.upstreamWritable
        case .upgrading: false
        default: true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        watchResponseWrite(writable: !responseWaits)
        if isWritable { resumeResponse() }
        context.fireChannelWritabilityChanged()
    }

    /// The stream can take more of the response: the upstream is read again.
    private func resumeResponse() {
        switch state {
        case .proxying(let exchange): exchange.clientDrained()
        case .proxyingHTTP2(let exchange): exchange.clientDrained()
        default: break
        }
    }

    /// A promise for a watched write of the response: once the client took it (its window let
    /// it go), what was held meanwhile goes, and the upstream is read again.
    private func watchedResponseWrite(_ context: ChannelHandlerContext) -> EventLoopPromise<Void> {
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.assumeIsolated().whenComplete { [self] _ in
            let next = responseWrites.watchedWriteCompleted().next
            guard let context = self.context, context.channel.isActive else { return }
            // The client took a write: progress, so the response-write deadline starts over
            // (re-armed below if the next write waits too).
            watchResponseWrite(writable: true)
            if let next {
                context.write(wrapOutboundOut(.body(.byteBuffer(next))), promise: watchedResponseWrite(context))
                context.flush()
            }
            watchResponseWrite(writable: !responseWaits)
            if isWritable { resumeResponse() }
        }
        return written
    }

    /// Whether the response waits on the client: the stream cannot be written, too much is held,
    /// or a watched write has not completed (its window is shut).
    private var responseWaits: Bool {
        !(context?.channel.isWritable ?? true) || responseWrites.holdsTooMuch || responseWrites.watchedWriteWaits
    }

    /// A response the client holds up (`writable` false): unless it goes on within
    /// `limits.response_write_timeout`, the stream is reset (CANCEL) and its upstream request cut
    /// (`responseWriteTimedOut`). Watched until the stream closes, whatever the exchange's state.
    private func watchResponseWrite(writable: Bool) {
        apply(responseWriteDeadline.observed(waits: !writable, headSent: responseHeadSent))
    }

    private func apply(_ action: HTTP2ResponseWriteDeadline.Action) {
        switch action {
        case .arm: shared.deadlines.arm(self, .responseWrite, after: shared.responseWriteTimeout)
        case .cancel: shared.deadlines.cancel(self, .responseWrite)
        case .none: break
        }
    }

    private func releaseConnectionSlot() {
        guard countsAsConnection else { return }
        countsAsConnection = false
        shared.connections.release()
    }

    private func responseWriteTimedOut() {
        responseWriteDeadline.passed()
        shared.gateway.metrics.stalledResponseWrites.increment()
        // The stream's close ends the exchange (`channelInactive`).
        context?.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        releaseConnectionSlot()
        session?.end(.client)
        switch state {
        case .proxying(let exchange): exchange.clientGone()
        case .proxyingHTTP2(let exchange): exchange.clientGone()
        case .upgrading(let upgrade):
            earlyData = []
            upgrade.cancel()
        default: break
        }
        state = .done
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A stream error (a body longer than its content-length, a reset): the request fails.
        switch state {
        case .proxying(let exchange) where !requestEnded: exchange.clientRequestMalformed()
        case .proxyingHTTP2(let exchange): exchange.clientGone()
        default: context.close(promise: nil)
        }
    }
}

// MARK: The exchange's view of this stream

extension HTTP2StreamHandler: ExchangeDownstream {
    var upstreamPool: UpstreamPool { shared.pool }
    var metrics: GatewayMetrics { shared.gateway.metrics }
    /// The stream's channel can be written and not too much of the response is held.
    var isWritable: Bool { (context?.channel.isWritable ?? false) && !responseWrites.holdsTooMuch }

    func armResponseHeaderTimeout(after timeout: TimeAmount) {
        shared.deadlines.arm(self, .responseHeader, after: timeout)
    }

    func cancelResponseHeaderTimeout() {
        shared.deadlines.cancel(self, .responseHeader)
    }

    func resumeRequestReads() {
        guard pendingRead, let context, upstreamTakesBytes else { return }
        pendingRead = false
        readIssued()
        context.read()
    }

    func sendResponseHead(_ head: UpstreamResponseHead, of exchange: UpstreamExchange) -> Bool {
        let response = HeaderRewriter.clientResponse(head, policy: exchange.route.headerPolicy, requestID: exchange.log.requestID,
                                                     extra: exchange.extraResponseHeaders, version: .http2)
        let fields = response.http2Fields()
        // An HTTP/1.1 upstream's head may hold up to 64 KB: one that would not fit a HEADERS frame
        // would close this client's connection (`HTTP2HeaderBlockSize`).
        guard HTTP2HeaderBlockSize.fitsOneFrame(fields) else { return false }
        responseHeadSent = true
        context?.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http2, status: response.status, headers: fields))), promise: nil)
        return true
    }

    func sendResponseBody(_ body: ByteBuffer) {
        guard let context else { return }
        switch responseWrites.take(body, allocator: context.channel.allocator) {
        case .write(let bytes, let watched):
            context.write(wrapOutboundOut(.body(.byteBuffer(bytes))), promise: watched ? watchedResponseWrite(context) : nil)
        case .held:
            break
        }
    }

    func flushResponse() {
        guard let context else { return }
        context.flush()
        if responseWrites.watchedWriteWaits || responseWrites.holdsTooMuch { watchResponseWrite(writable: !responseWaits) }
    }

    func retractUnsentResponse() -> Bool {
        // The head went to the stream's channel as written; a cut stream is reset instead.
        false
    }

    func exchangeCompleted(_ exchange: UpstreamExchange, upstreamTime: TimeAmount?, now: NIODeadline) {
        state = .done
        releaseConnectionSlot()
        session?.end(.upstream)
        shared.gateway.record(exchange.log, metrics: exchange.route.metrics, upstreamTime: upstreamTime, now: now, counter: &shared.responseCounter)
        endResponse(trailers: nil)
    }

    func exchangeFailed(_ exchange: UpstreamExchange, with response: ErrorResponse) {
        state = .done
        releaseConnectionSlot()
        session?.end(.upstream)
        // The route's fields (CORS, rate-limit state) go on a 502/504 too.
        exchange.log.bytesOut = answer(response.adding(exchange.extraResponseHeaders), requestID: exchange.log.requestID,
                                       isHEAD: exchange.clientHead.method == .HEAD)
        shared.gateway.record(exchange.log, metrics: exchange.route.metrics, upstreamTime: nil, now: .now(), counter: &shared.responseCounter)
    }

    func exchangeAborted(_ exchange: UpstreamExchange) {
        state = .done
        releaseConnectionSlot()
        session?.end(.upstream)
        context?.close(promise: nil)
        shared.gateway.record(exchange.log, metrics: exchange.route.metrics, upstreamTime: nil, now: .now(), counter: &shared.responseCounter)
    }

    func closeDownstream() {
        context?.close(promise: nil)
    }
}

// MARK: The stream's deadlines

extension HTTP2StreamHandler: HTTP2StreamDeadlineOwner {
    func deadlinePassed(_ kind: HTTP2StreamDeadlines.Kind) {
        switch kind {
        case .responseHeader:
            switch state {
            case .proxying(let exchange): exchange.responseHeaderTimedOut()
            case .proxyingHTTP2(let exchange): exchange.responseHeaderTimedOut()
            default: break
            }
        case .requestBody:
            bodyRate?.deadlinePassed()
        case .responseWrite:
            responseWriteTimedOut()
        }
    }

    var responseWait: (stream: UInt32, heldBytes: Int)? {
        guard let id = try? context?.channel.syncOptions?.getOption(HTTP2StreamChannelOptions.streamID) else { return nil }
        return (UInt32(Int(id)), responseWrites.heldBytes)
    }
}

// MARK: The HTTP/2 upstream exchange's view of this stream

extension HTTP2StreamHandler {
    /// Writes an HTTP/2 upstream's head; false, writing nothing, when it would not fit one HEADERS
    /// frame (`HTTP2HeaderBlockSize`): re-encoded for this connection a head can outgrow the
    /// frame it came in, and a head that does not fit would close this client's connection.
    func sendResponseHead(_ head: HTTPResponseHead) -> Bool {
        guard HTTP2HeaderBlockSize.fitsOneFrame(head.headers) else { return false }
        responseHeadSent = true
        context?.write(wrapOutboundOut(.head(head)), promise: nil)
        return true
    }

    func exchangeCompleted(log: RequestLog, route: CompiledRoute, trailers: HTTPHeaders?, upstreamTime: TimeAmount?, now: NIODeadline) {
        state = .done
        session?.end(.upstream)
        shared.gateway.record(log, metrics: route.metrics, upstreamTime: upstreamTime, now: now, counter: &shared.responseCounter)
        endResponse(trailers: trailers)
    }

    func exchangeFailed(log: RequestLog, route: CompiledRoute, with response: ErrorResponse) {
        state = .done
        session?.end(.upstream)
        var log = log
        log.bytesOut = answer(response, requestID: log.requestID, isHEAD: false)
        shared.gateway.record(log, metrics: route.metrics, upstreamTime: nil, now: .now(), counter: &shared.responseCounter)
    }

    func exchangeAborted(log: RequestLog, route: CompiledRoute) {
        state = .done
        session?.end(.upstream)
        context?.close(promise: nil)
        shared.gateway.record(log, metrics: route.metrics, upstreamTime: nil, now: .now(), counter: &shared.responseCounter)
    }
}

// MARK: Token end

extension HTTP2StreamHandler {
    /// Opens the stream's session when it was admitted with a token — a gRPC call always (the
    /// sessions metrics count gRPC calls), any other stream when its route closes on token end —
    /// or on the strength of the client certificate.
    private func watchToken(_ admitted: Admission.Admitted) {
        guard let loop = context?.eventLoop else { return }
        let certificate = admitted.reliesOnClientCertificate
        // What ends the call: its token's end (`on_token_end: close`) or the certificate's trust.
        callEndsWithAdmission = certificate || (admitted.identity != nil && admitted.route.config.onTokenEnd == .close)
        guard certificate || (admitted.identity != nil && (isGRPC || admitted.route.config.onTokenEnd == .close)) else { return }
        session = shared.gateway.sessions.open(protocol: isGRPC ? .grpc : .h2, token: admitted.identity, policy: admitted.route.config.onTokenEnd,
                                               certificate: certificate ? shared.client : nil, eventLoop: loop) { [weak self] end in self?.tokenEnded(end) }
    }

    /// The stream's token was revoked or expired (`LiveSessions`, route `on_token_end: close`), or
    /// a reload replaced the trust in the client certificate that admitted it: the upstream
    /// request is cut (its HTTP/2 stream reset, or its HTTP/1.1 connection closed). Before the
    /// response has begun the client gets 401 `invalid_token` (403 `client_certificate_required`
    /// for the certificate; gRPC status 16 for a gRPC call); after, a gRPC call ends with status 16 as trailers and any other stream is
    /// reset (RST_STREAM CANCEL), so the client sees the response cut short, never completed.
    private func tokenEnded(_ end: LiveSessions.TokenEnd) {
        let reason = end.reason.rawValue
        let ended: (log: RequestLog, route: CompiledRoute, extra: HTTPHeaders?)
        switch state {
        case .proxyingHTTP2(let exchange):
            guard let log = exchange.abandon(reason: reason) else { return }
            ended = (log, exchange.route, exchange.extraResponseHeaders)
        case .proxying(let exchange):
            guard let log = exchange.abandon(reason: reason) else { return }
            ended = (log, exchange.route, exchange.extraResponseHeaders)
        default:
            return
        }
        state = .done
        releaseConnectionSlot()
        if !responseHeadSent {
            // As at admission, with the route's fields (CORS: a browser must be able to read why).
            answer(end.response(realm: shared.routeTable().realm).adding(ended.extra), requestID: ended.log.requestID, isHEAD: false)
        } else if isGRPC {
            endResponse(trailers: ["grpc-status": "16", "grpc-message": GRPCStatus.encodedMessage(end.message)])
        } else {
            context?.close(promise: nil)
        }
        shared.gateway.record(ended.log, metrics: ended.route.metrics, upstreamTime: nil, now: .now(), counter: &shared.responseCounter)
    }
}

// MARK: WebSocket over HTTP/2 (RFC 8441)

extension HTTP2StreamHandler: WebSocketDownstream {
    /// An admitted extended CONNECT: the upstream gets the HTTP/1.1 upgrade its GET would be,
    /// with a `Sec-WebSocket-Key` of the gateway's (the client sends none over HTTP/2), whose
    /// answer the gateway checks.
    private func startWebSocket(_ admitted: Admission.Admitted, settings: WebSocketRouteConfig, head: HTTPRequestHead,
                                facts: RequestHeadFacts, log: RequestLog) {
        guard let context else { return }
        let rewritten = HeaderRewriter.upstreamRequest(head, uri: admitted.target.uri, policy: admitted.route.headerPolicy, identity: admitted.identity,
                                                       requestID: log.requestID, client: shared.client, hasAmbiguousNames: facts.hasAmbiguousNames)
        // Each WebSocket holds an upstream connection of its own: over HTTP/2 they count toward
        // limits.max_connections like client connections.
        guard shared.connections.acquire() else { return refuseOverConnectionLimit(route: admitted.route, log: log, isHEAD: false) }
        let slot = ConnectionSlot(shared.connections)
        webSocketSlot = slot
        context.channel.closeFuture.assumeIsolated().whenComplete { _ in slot.release() }
        var upstreamHead = WebSocketUpgrade.upstreamHead(rewritten)
        let key = WebSocketUpgrade.makeKey()
        upstreamHead.fields.removeAll { HeaderNameSet.matches($0.name, "sec-websocket-key") }
        upstreamHead.fields.append(("Sec-WebSocket-Key", key))
        let upgrade = WebSocketUpgrade(downstream: self, route: admitted.route, settings: settings, head: upstreamHead,
                                       requestID: log.requestID, clientVersion: .http2, log: log, sessions: shared.gateway.sessions,
                                       token: admitted.identity, certificate: admitted.reliesOnClientCertificate ? shared.client : nil,
                                       eventLoop: context.eventLoop, metrics: shared.gateway.metrics,
                                       expectedAccept: WebSocketUpgrade.accept(for: key))
        state = .upgrading(upgrade)
        upgrade.start()
    }

    var webSocketClientConnected: Bool { context?.channel.isActive ?? false }

    func webSocketFailed(_ response: ErrorResponse, log: RequestLog, route: CompiledRoute) {
        state = .done
        // Free at once: a client that does not open its window holds the stream, not the slot.
        webSocketSlot?.release()
        var log = log
        log.status = Int(response.status.code)
        log.bytesOut = answer(response, requestID: log.requestID, isHEAD: false)
        shared.gateway.record(log, metrics: route.metrics, upstreamTime: nil, now: .now(), counter: &shared.responseCounter)
    }

    func webSocketRefused(_ head: ClientResponseHead, body: ByteBuffer, log: RequestLog, route: CompiledRoute) {
        // A 2xx to an extended CONNECT opens the tunnel (RFC 8441 §5): an upstream that answers
        // the upgrade with one has not accepted a WebSocket, and its body must not reach the
        // client as if it were frames.
        if (200..<300).contains(head.status.code) {
            return webSocketFailed(ErrorResponse(status: .badGateway, error: "bad_gateway",
                                                 description: "the upstream answered the WebSocket handshake with \(head.status.code), not 101"),
                                   log: log, route: route)
        }
        state = .done
        webSocketSlot?.release()
        var log = log
        log.status = Int(head.status.code)
        log.bytesOut = body.readableBytes
        context?.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http2, status: head.status, headers: Self.webSocketFields(head)))),
                       promise: nil)
        if body.readableBytes > 0 { context?.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        endResponse(trailers: nil)
        shared.gateway.record(log, metrics: route.metrics, upstreamTime: nil, now: .now(), counter: &shared.responseCounter)
    }

    func webSocketCanCarry(_ head: ClientResponseHead) -> Bool {
        HTTP2HeaderBlockSize.fitsOneFrame(Self.webSocketFields(head))
    }

    /// The upstream accepted: the client gets 200 (RFC 8441 §5) with the upstream's fields but
    /// the HTTP/1.1 handshake's own, and the stream is handed to the relay: a
    /// `WebSocketStreamBridge` (DATA frames in and out as bytes) and the side handler `install`
    /// adds after it. This handler leaves the stream's pipeline.
    func webSocketAccepted(_ head: ClientResponseHead, log: RequestLog, route: CompiledRoute,
                           install: (ChannelPipeline.SynchronousOperations) throws -> Void) {
        guard let context else { return }
        state = .done
        var log = log
        log.status = 200
        responseHeadSent = true
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http2, status: .ok, headers: Self.webSocketFields(head)))),
                              promise: nil)
        shared.gateway.record(log, metrics: route.metrics, upstreamTime: nil, now: .now(), counter: &shared.responseCounter)
        let sync = context.pipeline.syncOperations
        do {
            try sync.addHandler(WebSocketStreamBridge(early: earlyData, clientEnded: requestEnded))
            try install(sync)
        } catch {
            context.close(promise: nil)
            return
        }
        earlyData = []
        sync.removeHandler(context: context, promise: nil)
    }

    /// The fields of the upstream's handshake answer an HTTP/2 client gets: not those of the
    /// HTTP/1.1 handshake (`Sec-WebSocket-Accept` answers the gateway's key; `Upgrade` and
    /// `Connection` are connection-specific, which HTTP/2 forbids).
    private static func webSocketFields(_ head: ClientResponseHead) -> HTTPHeaders {
        var headers = head.http2Fields()
        for name in ["sec-websocket-accept", "upgrade", "connection", "keep-alive", "proxy-connection", "transfer-encoding"] {
            headers.remove(name: name)
        }
        return headers
    }
}
