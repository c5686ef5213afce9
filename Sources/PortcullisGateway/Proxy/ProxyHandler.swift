import Logging
import NIOCore
import NIOHTTP1
import PortcullisCluster
import PortcullisJOSE

/// The request path, top to bottom, for one HTTP/1.1 client connection:
///
/// 1. `.head` arrives → request id, then `Admission`: head checks, route match, body-size check,
///    authentication (token, revocation, scopes, claim rules), rate limit.
/// 2. Refused → a JSON error with the RFC 6750 challenge; the request body is discarded.
/// 3. Accepted → an `UpstreamExchange` takes it: an upstream connection from this event loop's
///    pool (or a fresh one, on a healthy target), the rewritten head, then the body streamed
///    with backpressure. It reaches this connection only through `ExchangeDownstream`.
/// 4. The upstream's response streams back, framed here for HTTP/1.1 (`HTTP1Writer`).
/// 5. Metrics and one access-log line.
///
/// Pipelined requests are queued (`PipelinedRequests`) until the response before them is written, so there is at
/// most one exchange. (NIO's `HTTPServerPipelineHandler` would do the same, but it also stops
/// reading between every request and response, which costs two `epoll_ctl` calls per request
/// even for clients that never pipeline.) The connection state machine is tested in an
/// `EmbeddedChannel` (`ProxyConnectionTests`).
final class ProxyHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case idle
        /// The gateway answered; request parts are dropped until `.end`.
        case discarding
        case proxying(UpstreamExchange)
        /// A WebSocket upgrade waits for the upstream's answer (`WebSocketUpgrade`); nothing more
        /// is read from the client until the connection is handed over or closed.
        case upgrading(WebSocketUpgrade)
        /// The connection's last response is written (it closes once that is sent), or it is
        /// closed: nothing more read from the client is handled. NIO's decoder passes on what it
        /// still holds after `channelInactive`; a request among it started then would have an
        /// exchange outliving this handler, which the exchange's unowned reference does not allow.
        case closing
    }

    private let gateway: GatewayContext
    private let pool: UpstreamPool
    private let timeouts: ConnectionTimeoutHandler?
    /// The minimum request-body rate (`limits.request_body_min_rate`), nil when off.
    private let bodyRateLimit: RequestBodyRate.Limit?
    private var bodyRate: RequestBodyRate?
    private let client: HeaderRewriter.ClientInfo
    private let admission: Admission
    private var state: State = .idle
    /// Set while the handler is in the pipeline. Dropped in `handlerRemoved`: the context holds the
    /// handler, so keeping it would leak both with every closed connection.
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    /// What arrived of pipelined requests before the response to the one before them.
    private var pipelined = PipelinedRequests()
    /// Close the client connection once the current response is written.
    private var closeAfterResponse = false
    /// `closeAfterResponse` before the upstream's head was framed (which may set it for that
    /// head's framing); a head taken back (`retractUnsentResponse`) restores it.
    private var closeBeforeUpstreamHead = false
    /// Whether the current exchange ends with its token (or client certificate), and its session
    /// once it turns out long.
    private var tokenWatch = ExchangeTokenWatch()
    /// Writes responses as bytes (there is no NIO response encoder in this pipeline), a small
    /// response in one write.
    private var output = ResponseOutput()
    /// The response body's small writes, joined while the client is behind (`SmallWrites`).
    private var responseWrites = SmallWrites()
    /// The channel's allocator, looked up once (each `channel.allocator` read costs a few retains).
    private var allocator = ByteBufferAllocator()
    /// The field list of the last request sent upstream, whose storage the next one reuses (see
    /// `HeaderRewriter.upstreamRequest`); unique again once that request's exchange is gone.
    private var upstreamFields: [(name: String, value: String)] = []
    /// The route table this connection read last.
    private var routeTableCache: CachedRouteTable?
    /// The counter of this connection's last response.
    private var responseCounter: ResponseCounterCache?

    init(gateway: GatewayContext, pool: UpstreamPool, timeouts: ConnectionTimeoutHandler?, bodyRate: RequestBodyRate.Limit?,
         client: HeaderRewriter.ClientInfo) {
        self.gateway = gateway
        self.pool = pool
        self.timeouts = timeouts
        self.bodyRateLimit = bodyRate
        self.admission = Admission(gateway: gateway, client: client)
        self.client = client
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        allocator = context.channel.allocator
        // Strong capture: `handlerRemoved` stops the timer, which breaks the cycle (see DeadlineTimer).
        responseTimer = DeadlineTimer(eventLoop: context.eventLoop) { [self] in
            guard case .proxying(let exchange) = state else { return }
            exchange.responseHeaderTimedOut()
        }
        // Strong capture, stopped in `handlerRemoved` like the timer above.
        tokenWatch.start(eventLoop: context.eventLoop) { [self] in watchTokenIfLong() }
        if let limit = bodyRateLimit {
            // Strong capture: `handlerRemoved` stops it, which breaks the cycle.
            bodyRate = RequestBodyRate(limit, eventLoop: context.eventLoop) { [self] in
                requestBodyTooSlow()
            }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        tokenWatch.stop()
        responseTimer?.stop()
        responseTimer = nil
        bodyRate?.stop()
        bodyRate = nil
        _ = output.takeUnsent()
        self.context = nil
    }

    /// The upstream response-header timeout of the current exchange (one timer per connection).
    private var responseTimer: DeadlineTimer?

    // MARK: 1. Request head

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .closing = state { return }
        let part = unwrapInboundIn(data)
        if let bodyRate {
            switch part {
            case .head: bodyRate.headReceived()
            case .body(let bytes): bodyRate.bodyReceived(bytes: bytes.readableBytes)
            case .end: bodyRate.endReceived()
            }
        }
        if !pipelined.isEmpty {
            pipelined.append(part)
            return
        }
        if case .head = part, !isIdle {
            pipelined.append(part)
            return
        }
        process(part)
    }

    private var isIdle: Bool {
        if case .idle = state { return true }
        return false
    }

    private func process(_ part: HTTPServerRequestPart) {
        switch part {
        case .head(let head):
            timeouts?.headReceived()
            handleHead(head)
        case .body(let body):
            switch state {
            case .proxying(let exchange): exchange.clientBody(body)
            case .idle, .discarding, .upgrading, .closing: break
            }
        case .end:
            switch state {
            case .proxying(let exchange): exchange.clientEnd()
            case .discarding: becameIdle()
            case .idle, .upgrading, .closing: break
            }
        }
    }

    /// The request and its response are both complete: serve what was pipelined meanwhile —
    /// unless that response was the connection's last.
    private func becameIdle() {
        guard !closeAfterResponse else {
            state = .closing
            pipelined.removeAll()
            return
        }
        state = .idle
        while let next = pipelined.next(mayBeginRequest: isIdle) {
            switch next {
            case .part(let part): process(part)
            case .malformedRequest, .malformedBody: malformed()
            }
        }
        if pipelined.isEmpty { resumeClientReads() }
    }

    private func handleHead(_ head: HTTPRequestHead, trimmed: Bool = false) {
        let facts = RequestHeadFacts(head.headers)
        if facts.hasPaddedValues, !trimmed {
            // Rare: handled again with its values trimmed (`OptionalWhitespace`), once.
            var trimmedHead = head
            trimmedHead.headers = OptionalWhitespace.trimmed(head.headers)
            return handleHead(trimmedHead, trimmed: true)
        }
        let start = NIODeadline.now()
        let requestID = RequestID.accept(facts.requestID) ?? RequestID.generate()
        var log = RequestLog(requestID: requestID, method: head.method.rawValue, target: head.uri, start: start)

        let table = gateway.routeTable(cached: &routeTableCache)
        let admitted: Admission.Admitted
        switch admission.admit(head, facts: facts, table: table, log: &log, clientCertificate: clientCertificateThumbprint) {
        case .admitted(let request):
            admitted = request
        case .refused(let response, let metrics):
            // NIO's decoder reads nothing after an upgrade request or a CONNECT: the connection
            // ends with the answer.
            if facts.hasUpgrade || head.method == .CONNECT { closeAfterResponse = true }
            return reject(response, head: head, log: &log, hasBody: facts.hasBody, metrics: metrics)
        }
        let route = admitted.route
        if facts.upgradesToWebSocket, let settings = route.config.websocket {
            return startWebSocket(admitted, settings: settings, head: head, facts: facts, log: log)
        }
        // An upgrade to another protocol is forwarded as a plain request (`Upgrade` is hop by
        // hop); the decoder still reads nothing after it.
        if facts.hasUpgrade { closeAfterResponse = true }
        if route.upstream.http2 {
            // An HTTP/2 upstream (gRPC) is reached from HTTP/2 clients only: its trailers and
            // streams have no HTTP/1.1 form here.
            let refusal = ErrorResponse(status: .httpVersionNotSupported, error: "http_version_not_supported",
                                        description: "this route's upstream speaks HTTP/2; send the request over HTTP/2")
            return reject(refusal, head: head, log: &log, hasBody: facts.hasBody, metrics: route.metrics)
        }

        // 3. Accepted: forward.
        let upstreamHead = HeaderRewriter.upstreamRequest(head, uri: admitted.target.uri, policy: route.headerPolicy, identity: admitted.identity,
                                                          requestID: requestID, client: client, hasAmbiguousNames: facts.hasAmbiguousNames,
                                                          reusing: takeUpstreamFields())
        upstreamFields = upstreamHead.fields
        // RFC 9110 §10.1.1: an HTTP/1.0 client's expectation is ignored (it may not know a 100).
        if facts.expectsContinue, head.version.minor >= 1 {
            // The gateway vouches for the request now that it passed auth; the upstream never sees Expect.
            context?.writeAndFlush(wrapOutboundOut(ByteBuffer(staticString: "HTTP/1.1 100 Continue\r\n\r\n")), promise: nil)
        }
        let exchange = UpstreamExchange(downstream: self, route: route, clientHead: head, upstreamHead: upstreamHead,
                                        log: log, extraResponseHeaders: admitted.responseHeaders)
        tokenWatch.exchangeAdmitted(token: route.config.onTokenEnd == .close ? admitted.identity : nil,
                                    reliesOnCertificate: admitted.reliesOnClientCertificate, at: start)
        state = .proxying(exchange)
        exchange.start()
    }

    /// The SHA-256 of this connection's verified client certificate, nil without one.
    private func clientCertificateThumbprint() -> [UInt8]? {
        guard let channel = context?.channel else { return nil }
        return client.clientCertificateThumbprint(channel: channel)
    }

    /// The stored field list, handed over so that the caller holds the only reference.
    private func takeUpstreamFields() -> [(name: String, value: String)] {
        let fields = upstreamFields
        upstreamFields = []
        return fields
    }

    // MARK: 2. Refusals

    private func reject(_ response: ErrorResponse, head: HTTPRequestHead, log: inout RequestLog, hasBody: Bool, metrics: RouteMetrics) {
        // An unread body would be parsed as the next request; rather than drain an arbitrary
        // amount, close the connection after answering.
        if hasBody || response.closesConnection { closeAfterResponse = true }
        state = .discarding
        log.status = Int(response.status.code)
        log.reason = log.reason ?? response.error
        log.bytesOut = writeGatewayResponse(response, to: head, requestID: log.requestID)
        finish(log: log, metrics: metrics, upstreamTime: nil)
    }

    /// Writes a response the gateway composed itself to the request `head`; returns its body's length.
    @discardableResult
    private func writeGatewayResponse(_ response: ErrorResponse, to head: HTTPRequestHead, requestID: String) -> Int {
        writeGatewayResponse(response, version: head.version, isHEAD: head.method == .HEAD,
                             keepAlive: head.isKeepAlive, requestID: requestID)
    }

    @discardableResult
    private func writeGatewayResponse(_ response: ErrorResponse, version: HTTPVersion, isHEAD: Bool, keepAlive: Bool, requestID: String) -> Int {
        guard context != nil else { return 0 }
        let body = response.hasBody ? response.body(requestID: requestID, allocator: allocator) : allocator.buffer(capacity: 0)
        var head = ClientResponseHead(version: version, status: response.status, contentLength: response.hasBody ? body.readableBytes : nil,
                                      fields: response.headers.map { $0 })
        if response.hasBody { head.fields.append(("Content-Type", "application/json")) }
        head.fields.append(("X-Request-Id", requestID))
        head.fields.append(("Cache-Control", "no-store"))
        let keepAlive = keepAlive && !closeAfterResponse
        if !keepAlive {
            head.fields.append(("Connection", "close"))
            // The connection's last response: nothing queued behind it is answered.
            closeAfterResponse = true
        }
        // A response to HEAD states the length of the body it would have had, and has none.
        writeResponseHead(head, framing: isHEAD || !response.hasBody ? .none : .length, bodyLength: body.readableBytes)
        writeResponseBody(body)
        writeEnd(keepAlive: keepAlive)
        return isHEAD ? 0 : body.readableBytes
    }

    private func writeResponseHead(_ head: ClientResponseHead, framing: HTTP1Writer.Framing, bodyLength: Int?) {
        guard context != nil else { return }
        output.head(head, framing: framing, bodyLength: bodyLength, allocator: allocator)
    }

    private func writeResponseBody(_ body: ByteBuffer) {
        guard let context else { return }
        // Behind a held-back head, small parts are copied anyway (`ResponseOutput`).
        guard !output.holdsHead else { return writeOutput(body, promise: nil, context: context) }
        switch responseWrites.take(body, allocator: allocator) {
        case .write(let bytes, let watched):
            writeOutput(bytes, promise: watched ? watchedResponseWrite(context) : nil, context: context)
        case .held:
            break
        }
    }

    private func writeOutput(_ body: ByteBuffer, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext) {
        output.body(body, promise: promise, allocator: allocator) { context.write(wrapOutboundOut($0), promise: $1) }
    }

    /// A promise for a watched write of the response: once the client took it, what was held
    /// meanwhile goes, and the upstream is read again if holding had stopped it.
    private func watchedResponseWrite(_ context: ChannelHandlerContext) -> EventLoopPromise<Void> {
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.assumeIsolated().whenSuccess { [self] in
            // Progress: the deadline stops, and starts over if the next write waits too.
            timeouts?.heldResponseWrite(waits: false)
            let completion = responseWrites.watchedWriteCompleted()
            guard let next = completion.next, let context = self.context else { return }
            writeOutput(next, promise: watchedResponseWrite(context), context: context)
            flushClient()
            guard completion.resumesFeed else { return }
            if case .proxying(let exchange) = state { exchange.clientDrained() }
            resumeClientReads()
        }
        return written
    }

    /// `now` serves the idle timer (a caller that just read the clock passes its reading).
    private func writeEnd(keepAlive: Bool, now: NIODeadline = .now()) {
        guard let context else { return }
        if let held = responseWrites.drain() { writeOutput(held, promise: nil, context: context) }
        let last = output.end(allocator: allocator)
        if keepAlive {
            if let last { context.write(wrapOutboundOut(last), promise: nil) }
            context.flush()
            timeouts?.exchangeCompleted(now: now)
        } else {
            let last = last ?? allocator.buffer(capacity: 0)
            context.writeAndFlush(wrapOutboundOut(last)).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
        if responseWrites.watchedWriteWaits { timeouts?.heldResponseWrite(waits: true) }
    }

    // MARK: 5. Completion

    private func finish(log: RequestLog, metrics: RouteMetrics, upstreamTime: TimeAmount?, now: NIODeadline = .now()) {
        gateway.record(log, metrics: metrics, upstreamTime: upstreamTime, now: now, counter: &responseCounter)
    }

    /// After the response to `exchange` was written: idle if its request was fully read, else
    /// the rest of the request body is discarded first.
    private func settle(_ exchange: UpstreamExchange) {
        guard case .proxying(let current) = state, current === exchange else { return }
        if exchange.clientRequestEnded {
            becameIdle()
        } else {
            state = .discarding
            resumeClientReads()
        }
    }

    // MARK: Backpressure and connection events

    /// Client reads pause while the upstream connection is missing or cannot take more bytes,
    /// while pipelined requests wait in the queue, and while the client is not taking the bytes
    /// already written to it (its channel is not writable): a client that pipelines requests and
    /// never reads would otherwise make the gateway buffer answers without bound.
    func read(context: ChannelHandlerContext) {
        guard mayRead(context) else {
            pendingRead = true
            return
        }
        bodyRate?.readIssued()
        context.read()
    }

    private func mayRead(_ context: ChannelHandlerContext) -> Bool {
        if !pipelined.isEmpty || !context.channel.isWritable || responseWrites.holdsTooMuch { return false }
        if case .closing = state { return false }
        if case .proxying(let exchange) = state, !exchange.upstreamWritable { return false }
        if case .upgrading = state { return false }
        return true
    }

    /// SIGTERM drain (NIO's quiescing helper), or a reload that replaced the client trust the
    /// connection opened under or stopped trusting the proxy it comes from (its client
    /// reconnects under the new setup): finish the current exchange, then close.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent || event is ClientTrustReplacedEvent {
            closeAfterResponse = true
            if isIdle {
                // Nothing more is read: a request arriving while TLS waits on the client's
                // close_notify is not admitted.
                state = .closing
                pipelined.removeAll()
                context.close(promise: nil)
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// The client sent the body of the current request below the minimum rate (`RequestBodyRate`).
    private func requestBodyTooSlow() {
        gateway.metrics.slowRequestBodies.increment()
        closeAfterResponse = true
        pipelined.removeAll()
        switch state {
        case .proxying(let exchange): exchange.clientBodyTooSlow()
        case .discarding, .idle, .upgrading, .closing: context?.close(promise: nil)
        }
    }

    /// Issues the read held back, if one is and nothing holds it back any more.
    private func resumeClientReads() {
        guard pendingRead, let context, mayRead(context) else { return }
        pendingRead = false
        bodyRate?.readIssued()
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            if case .proxying(let exchange) = state { exchange.clientDrained() }
            resumeClientReads()
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        tokenWatch.exchangeEnded(.client)
        if case .proxying(let exchange) = state {
            exchange.clientGone()
        }
        if case .upgrading(let upgrade) = state { upgrade.cancel() }
        // The decoder passes on what it still holds after this (`decodeLast`): none of it is
        // handled.
        state = .closing
        pipelined.removeAll()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Once the decoder has refused bytes it reports each later read this way (NIO reads on
        // while reads fill its buffer): the refusal already took its turn below.
        if case ByteToMessageDecoderError.dataReceivedInErrorState = error { return }
        guard error is HTTPParserError else {
            context.close(promise: nil)
            return
        }
        // NIO's decoder refused the bytes (malformed, smuggling shapes, over a limit, data after a
        // request with `Connection: close`). Nothing after them can be framed, but the requests
        // before them were: they are answered first, in order, and the refusal takes its turn
        // behind them (the decoder passes on nothing more, so the queue ends with it).
        if pipelined.decoderRefused() { return }
        if case .proxying(let exchange) = state, exchange.clientRequestEnded {
            pipelined.appendMalformedRequest()
            return
        }
        malformed()
    }

    /// Refused bytes, in their turn: the connection closes once the request they belong to is
    /// answered.
    private func malformed() {
        guard let context else { return }
        closeAfterResponse = true
        pipelined.removeAll()
        switch state {
        case .idle:
            // Logged and counted like any refusal (no method or path could be read: `-`), so
            // malformed requests show in the access log and among the unmatched requests' 400s.
            var log = RequestLog(requestID: RequestID.generate(), method: "-", target: "-", start: .now())
            log.client = admission.client.requestAddress(HTTPHeaders())
            log.status = Int(ErrorResponse.malformedRequest.status.code)
            log.reason = "malformed_request"
            log.bytesOut = writeGatewayResponse(ErrorResponse.malformedRequest, version: .http1_1, isHEAD: false, keepAlive: false,
                                                requestID: log.requestID)
            state = .closing
            finish(log: log, metrics: gateway.unmatchedRoute, upstreamTime: nil)
        case .proxying(let exchange):
            // In the body of a request being forwarded: that request fails with the 400 (the
            // upstream connection is closed).
            exchange.clientRequestMalformed()
        case .discarding, .upgrading, .closing:
            // The request was answered already (or is being upgraded); its body is what broke.
            context.writeAndFlush(wrapOutboundOut(allocator.buffer(capacity: 0))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
    }

    private func flushClient() {
        guard let context else { return }
        if let held = output.takeUnsent() { context.write(wrapOutboundOut(held), promise: nil) }
        context.flush()
        // A watched write the client did not take at once: the response-write deadline runs.
        if responseWrites.watchedWriteWaits { timeouts?.heldResponseWrite(waits: true) }
    }

    private func closeClient() {
        // A response cut short: its held-back bytes go nowhere, like any write not yet flushed.
        _ = output.takeUnsent()
        context?.close(promise: nil)
    }
}

// MARK: 3-4. The exchange's view of this connection

extension ProxyHandler: ExchangeDownstream {
    var upstreamPool: UpstreamPool { pool }
    var metrics: GatewayMetrics { gateway.metrics }
    var isWritable: Bool { (context?.channel.isWritable ?? false) && !responseWrites.holdsTooMuch }

    func armResponseHeaderTimeout(after timeout: TimeAmount) {
        responseTimer?.set(after: timeout)
    }

    func cancelResponseHeaderTimeout() {
        responseTimer?.cancel()
    }

    func resumeRequestReads() {
        resumeClientReads()
    }

    /// The upstream's fields the route lets through and the gateway's own, framed for this
    /// client: the length, chunks for an unframed body, or the connection closing (HTTP/1.0).
    func sendResponseHead(_ head: UpstreamResponseHead, of exchange: UpstreamExchange) -> Bool {
        var response = HeaderRewriter.clientResponse(head, policy: exchange.route.headerPolicy, requestID: exchange.log.requestID,
                                                     extra: exchange.extraResponseHeaders, version: exchange.clientHead.version)
        let framing = HTTP1Writer.responseFraming(response, bodyless: exchange.clientHead.method == .HEAD)
        closeBeforeUpstreamHead = closeAfterResponse
        // An HTTP/1.0 client can only find the end of an unframed body by the connection closing.
        if framing == .close || !exchange.clientHead.isKeepAlive { closeAfterResponse = true }
        if closeAfterResponse {
            response.fields.removeAll { HeaderNameSet.matches($0.name, "connection") }
            response.fields.append(("Connection", "close"))
        }
        writeResponseHead(response, framing: framing, bodyLength: response.contentLength)
        return true
    }

    func sendResponseBody(_ body: ByteBuffer) {
        writeResponseBody(body)
    }

    func flushResponse() {
        flushClient()
        if tokenWatch.isWatched { watchTokenIfLong() }
    }

    func retractUnsentResponse() -> Bool {
        // The head is held back until the first large body part or flush (`ResponseOutput`):
        // while it is, nothing of the response has been written.
        guard output.takeUnsent() != nil else { return false }
        closeAfterResponse = closeBeforeUpstreamHead
        return true
    }

    func exchangeCompleted(_ exchange: UpstreamExchange, upstreamTime: TimeAmount?, now: NIODeadline) {
        tokenWatch.exchangeEnded(.upstream)
        // The upstream answered before the body was fully sent: the rest is not read.
        if !exchange.clientRequestEnded { closeAfterResponse = true }
        finish(log: exchange.log, metrics: exchange.route.metrics, upstreamTime: upstreamTime, now: now)
        writeEnd(keepAlive: !closeAfterResponse, now: now)
        settle(exchange)
    }

    func exchangeFailed(_ exchange: UpstreamExchange, with response: ErrorResponse) {
        tokenWatch.exchangeEnded(.upstream)
        if !exchange.clientRequestEnded { closeAfterResponse = true }
        // The route's fields (CORS, rate-limit state) go on a 502/504 too: a browser must be able
        // to read why its request failed.
        exchange.log.bytesOut = writeGatewayResponse(response.adding(exchange.extraResponseHeaders), to: exchange.clientHead, requestID: exchange.log.requestID)
        finish(log: exchange.log, metrics: exchange.route.metrics, upstreamTime: nil)
        settle(exchange)
    }

    func exchangeAborted(_ exchange: UpstreamExchange) {
        tokenWatch.exchangeEnded(.upstream)
        closeClient()
        finish(log: exchange.log, metrics: exchange.route.metrics, upstreamTime: nil)
    }

    func closeDownstream() {
        closeClient()
    }
}

// MARK: Token end

extension ProxyHandler {
    /// A watched exchange still running after a read of its upstream (this runs at each flush) or
    /// `ExchangeTokenWatch.watchAfter` (its timer): from now on it ends with its token.
    private func watchTokenIfLong() {
        guard case .proxying = state, let loop = context?.eventLoop else { return }
        // Strong capture (a weak reference would give this handler a side table, slowing every
        // retain of it): the cycle ends with the session, which every end of the exchange and
        // of the connection ends (`ExchangeTokenWatch.exchangeEnded`).
        tokenWatch.openIfWatched(in: gateway.sessions, client: client, eventLoop: loop) { [self] end in
            tokenEnded(end)
        }
    }

    /// The exchange's token was revoked or expired, or a reload replaced the trust in the client
    /// certificate that admitted it: the upstream request is cut. Before the response has begun
    /// the client gets 401 `invalid_token` (403 `client_certificate_required` for the
    /// certificate; as over HTTP/2) and the connection closes (the rest of the request is not read). After, the client's connection is reset, so
    /// the client sees the response cut short, never completed — also an HTTP/1.0 client, whose
    /// body without a length ends when the connection closes (a plain close would complete it).
    private func tokenEnded(_ end: LiveSessions.TokenEnd) {
        tokenWatch.tokenEnded()
        guard case .proxying(let exchange) = state, var log = exchange.abandon(reason: end.reason.rawValue) else { return }
        closeAfterResponse = true
        state = .closing
        if !exchange.responseHeadSent {
            // The route's fields (CORS, rate-limit state) too, as on a refusal at admission: a
            // browser must be able to read why its request failed.
            let response = end.response(realm: gateway.routeTable(cached: &routeTableCache).realm).adding(exchange.extraResponseHeaders)
            log.bytesOut = writeGatewayResponse(response, to: exchange.clientHead, requestID: log.requestID)
        } else {
            _ = output.takeUnsent()
            if let context { AbortiveClose.close(context) }
        }
        finish(log: log, metrics: exchange.route.metrics, upstreamTime: nil)
    }
}

// MARK: WebSocket upgrades

extension ProxyHandler: WebSocketDownstream, RemovableChannelHandler {
    /// An admitted upgrade: the upstream gets the rewritten head with the upgrade stated again,
    /// on a connection of its own (`WebSocketUpgrade`).
    private func startWebSocket(_ admitted: Admission.Admitted, settings: WebSocketRouteConfig, head: HTTPRequestHead,
                                facts: RequestHeadFacts, log: RequestLog) {
        guard let context else { return }
        let rewritten = HeaderRewriter.upstreamRequest(head, uri: admitted.target.uri, policy: admitted.route.headerPolicy, identity: admitted.identity,
                                                       requestID: log.requestID, client: client, hasAmbiguousNames: facts.hasAmbiguousNames)
        closeAfterResponse = true
        let upgrade = WebSocketUpgrade(downstream: self, route: admitted.route, settings: settings, head: WebSocketUpgrade.upstreamHead(rewritten),
                                       requestID: log.requestID, clientVersion: head.version, log: log, sessions: gateway.sessions,
                                       token: admitted.identity, certificate: admitted.reliesOnClientCertificate ? client : nil,
                                       eventLoop: context.eventLoop, metrics: gateway.metrics)
        state = .upgrading(upgrade)
        upgrade.start()
    }

    var webSocketClientConnected: Bool { context?.channel.isActive ?? false }

    func webSocketFailed(_ response: ErrorResponse, log: RequestLog, route: CompiledRoute) {
        var log = log
        log.status = Int(response.status.code)
        writeGatewayResponse(response, version: .http1_1, isHEAD: false, keepAlive: false, requestID: log.requestID)
        finish(log: log, metrics: route.metrics, upstreamTime: nil)
    }

    func webSocketRefused(_ head: ClientResponseHead, body: ByteBuffer, log: RequestLog, route: CompiledRoute) {
        var log = log
        log.status = Int(head.status.code)
        writeResponseHead(head, framing: .length, bodyLength: body.readableBytes)
        writeResponseBody(body)
        finish(log: log, metrics: route.metrics, upstreamTime: nil)
        writeEnd(keepAlive: false)
    }

    func webSocketCanCarry(_ head: ClientResponseHead) -> Bool { true }

    func webSocketAccepted(_ head: ClientResponseHead, log: RequestLog, route: CompiledRoute,
                           install: (ChannelPipeline.SynchronousOperations) throws -> Void) {
        guard let context else { return }
        state = .idle  // drops the upgrade, which holds this handler
        var log = log
        log.status = 101
        writeResponseHead(head, framing: .none, bodyLength: nil)
        flushClient()
        finish(log: log, metrics: route.metrics, upstreamTime: nil)
        let sync = context.pipeline.syncOperations
        do {
            try install(sync)
            let decoder = try sync.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self)
            sync.removeHandler(context: decoder, promise: nil)
            sync.removeHandler(context: context, promise: nil)
        } catch {
            context.close(promise: nil)
            return
        }
        // Reads were held during the handshake; the frame handlers take them from here.
        context.channel.read()
    }
}
