import Logging
import NIOCore
import NIOHTTP1
import PortcullisCluster
import PortcullisJOSE

/// The request path, top to bottom, for one client connection:
///
/// 1. `.head` arrives → request id, then `Admission`: head checks, route match, body-size check,
///    authentication (token, revocation, scopes, claim rules), rate limit.
/// 2. Refused → a JSON error with the RFC 6750 challenge; the request body is discarded.
/// 3. Accepted → an upstream connection from this event loop's pool (or a fresh one, on a
///    healthy target), the rewritten head, then the body streamed with backpressure.
/// 4. The upstream's response streams back; the connection returns to the pool.
/// 5. Metrics and one access-log line.
///
/// Pipelined requests are queued here until the response before them is written, so there is at
/// most one exchange. (NIO's `HTTPServerPipelineHandler` would do the same, but it also stops
/// reading between every request and response, which costs two `epoll_ctl` calls per request
/// even for clients that never pipeline.)
final class ProxyHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case idle
        /// The gateway answered; request parts are dropped until `.end`.
        case discarding
        case proxying(Exchange)
    }

    private let gateway: GatewayContext
    private let pool: UpstreamPool
    private let timeouts: ConnectionTimeoutHandler?
    /// The minimum request-body rate (`limits.request_body_min_rate`), nil when off.
    struct BodyRateLimit {
        let minimumRate: Int
        let grace: TimeAmount
    }
    private let bodyRateLimit: BodyRateLimit?
    private var bodyRate: RequestBodyRate?
    private let client: HeaderRewriter.ClientInfo
    private let admission: Admission
    private var state: State = .idle
    /// Set while the handler is in the pipeline. Dropped in `handlerRemoved`: the context holds the
    /// handler, so keeping it would leak both with every closed connection.
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    /// Parts of pipelined requests that arrived before the response to the one before them.
    private var queued = CircularBuffer<HTTPServerRequestPart>()
    /// Close the client connection once the current response is written.
    private var closeAfterResponse = false
    /// Writes responses as bytes (there is no NIO response encoder in this pipeline), a small
    /// response in one write.
    private var output = ResponseOutput()
    /// The channel's allocator, looked up once (each `channel.allocator` read costs a few retains).
    private var allocator = ByteBufferAllocator()
    /// The field list of the last request sent upstream, whose storage the next one reuses (see
    /// `HeaderRewriter.upstreamRequest`); unique again once that request's exchange is gone.
    private var upstreamFields: [(name: String, value: String)] = []
    /// The route table this connection read last.
    private var routeTableCache: CachedRouteTable?

    init(gateway: GatewayContext, pool: UpstreamPool, timeouts: ConnectionTimeoutHandler?, bodyRate: BodyRateLimit?,
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
        if let limit = bodyRateLimit {
            // Strong capture: `handlerRemoved` stops it, which breaks the cycle.
            bodyRate = RequestBodyRate(minimumRate: limit.minimumRate, grace: limit.grace, eventLoop: context.eventLoop) { [self] in
                requestBodyTooSlow()
            }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        responseTimer?.stop()
        responseTimer = nil
        bodyRate?.stop()
        bodyRate = nil
        _ = output.takeUnsent()
        self.context = nil
    }

    /// The upstream response-header timeout of the current exchange (one timer per connection).
    fileprivate var responseTimer: DeadlineTimer?

    // MARK: 1. Request head

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if let bodyRate {
            switch part {
            case .head: bodyRate.headReceived()
            case .body(let bytes): bodyRate.bodyReceived(bytes: bytes.readableBytes)
            case .end: bodyRate.endReceived()
            }
        }
        if !queued.isEmpty {
            queued.append(part)
            return
        }
        if case .head = part, !isIdle {
            queued.append(part)
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
            case .idle, .discarding: break
            }
        case .end:
            switch state {
            case .proxying(let exchange): exchange.clientEnd()
            case .discarding: becameIdle()
            case .idle: break
            }
        }
    }

    /// The request and its response are both complete: serve what was pipelined meanwhile.
    private func becameIdle() {
        state = .idle
        guard !closeAfterResponse else { return }
        while let next = queued.first {
            if case .head = next, !isIdle { break }
            queued.removeFirst()
            process(next)
        }
        if queued.isEmpty { resumeClientReads() }
    }

    private func handleHead(_ head: HTTPRequestHead) {
        let start = NIODeadline.now()
        let facts = RequestHeadFacts(head.headers)
        let requestID = RequestID.accept(facts.requestID) ?? RequestID.generate()
        var log = RequestLog(requestID: requestID, method: head.method.rawValue, target: head.uri, start: start)

        let table = gateway.routeTable(cached: &routeTableCache)
        let admitted: Admission.Admitted
        switch admission.admit(head, facts: facts, table: table, log: &log, clientCertificate: clientCertificateThumbprint) {
        case .admitted(let request):
            admitted = request
        case .refused(let response, let metrics):
            return reject(response, head: head, log: &log, hasBody: facts.hasBody, metrics: metrics)
        }
        let route = admitted.route

        // 3. Accepted: forward.
        let upstreamHead = HeaderRewriter.upstreamRequest(head, uri: admitted.target.uri, policy: route.headerPolicy, identity: admitted.identity,
                                                          requestID: requestID, client: client, hasUnderscoredNames: facts.hasUnderscoredNames,
                                                          reusing: takeUpstreamFields())
        upstreamFields = upstreamHead.fields
        // RFC 9110 §10.1.1: an HTTP/1.0 client's expectation is ignored (it may not know a 100).
        if facts.expectsContinue, head.version.minor >= 1 {
            // The gateway vouches for the request now that it passed auth; the upstream never sees Expect.
            context?.writeAndFlush(wrapOutboundOut(ByteBuffer(staticString: "HTTP/1.1 100 Continue\r\n\r\n")), promise: nil)
        }
        let exchange = Exchange(handler: self, route: route, clientHead: head, upstreamHead: upstreamHead,
                                log: log, extraResponseHeaders: admitted.rateLimitHeaders)
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
        if hasBody { closeAfterResponse = true }
        state = .discarding
        log.status = Int(response.status.code)
        log.reason = log.reason ?? response.error
        writeGatewayResponse(response, to: head, requestID: log.requestID)
        finish(log: log, metrics: metrics, upstreamTime: nil)
    }

    /// Writes a response the gateway composed itself to the request `head`.
    fileprivate func writeGatewayResponse(_ response: ErrorResponse, to head: HTTPRequestHead, requestID: String) {
        writeGatewayResponse(response, version: head.version, isHEAD: head.method == .HEAD,
                             keepAlive: head.isKeepAlive, requestID: requestID)
    }

    private func writeGatewayResponse(_ response: ErrorResponse, version: HTTPVersion, isHEAD: Bool, keepAlive: Bool, requestID: String) {
        guard context != nil else { return }
        let body = response.body(requestID: requestID, allocator: allocator)
        var head = ClientResponseHead(version: version, status: response.status, contentLength: body.readableBytes,
                                      fields: response.headers.map { $0 })
        head.fields.append(("Content-Type", "application/json"))
        head.fields.append(("X-Request-Id", requestID))
        head.fields.append(("Cache-Control", "no-store"))
        let keepAlive = keepAlive && !closeAfterResponse
        if !keepAlive { head.fields.append(("Connection", "close")) }
        // A response to HEAD states the length of the body it would have had, and has none.
        writeResponseHead(head, framing: isHEAD ? .none : .length, bodyLength: body.readableBytes)
        writeResponseBody(body)
        writeEnd(keepAlive: keepAlive)
    }

    fileprivate func writeResponseHead(_ head: ClientResponseHead, framing: HTTP1Writer.Framing, bodyLength: Int?) {
        guard context != nil else { return }
        output.head(head, framing: framing, bodyLength: bodyLength, allocator: allocator)
    }

    fileprivate func writeResponseBody(_ body: ByteBuffer) {
        guard let context else { return }
        output.body(body, allocator: allocator) { context.write(wrapOutboundOut($0), promise: nil) }
    }

    /// `now` serves the idle timer (a caller that just read the clock passes its reading).
    private func writeEnd(keepAlive: Bool, now: NIODeadline = .now()) {
        guard let context else { return }
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
    }

    // MARK: 5. Completion

    fileprivate func finish(log: RequestLog, metrics: RouteMetrics, upstreamTime: TimeAmount?, now: NIODeadline = .now()) {
        let total = now - log.start
        metrics.countResponse(method: log.method, status: log.status)
        metrics.requestDuration.record(GatewayMetrics.seconds(total))
        if let upstreamTime {
            metrics.upstreamDuration.record(GatewayMetrics.seconds(upstreamTime))
            gateway.metrics.addedLatency.record(GatewayMetrics.seconds(max(.zero, total - upstreamTime)))
        }
        gateway.accessLog?.record(log, duration: total)
    }

    fileprivate func exchangeFinished(_ exchange: Exchange, keepAlive: Bool, now: NIODeadline) {
        writeEnd(keepAlive: keepAlive && !closeAfterResponse, now: now)
        settle(exchange)
    }

    /// After the response to `exchange` was written: idle if its request was fully read, else
    /// the rest of the request body is discarded first.
    private func settle(_ exchange: Exchange) {
        guard case .proxying(let current) = state, current === exchange else { return }
        if exchange.clientRequestEnded {
            becameIdle()
        } else {
            state = .discarding
            resumeClientReads()
        }
    }

    /// Whether the connection closes after the response being written.
    fileprivate var closesAfterResponse: Bool { closeAfterResponse }

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
        if !queued.isEmpty || !context.channel.isWritable { return false }
        if case .proxying(let exchange) = state, !exchange.upstreamWritable { return false }
        return true
    }

    /// SIGTERM drain (NIO's quiescing helper): finish the current exchange, then close.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            closeAfterResponse = true
            if isIdle { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// The client sent the body of the current request below the minimum rate (`RequestBodyRate`).
    private func requestBodyTooSlow() {
        gateway.metrics.slowRequestBodies.increment()
        closeAfterResponse = true
        queued.removeAll()
        switch state {
        case .proxying(let exchange): exchange.clientBodyTooSlow()
        case .discarding, .idle: context?.close(promise: nil)
        }
    }

    /// Issues the read held back, if one is and nothing holds it back any more.
    fileprivate func resumeClientReads() {
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
        if case .proxying(let exchange) = state {
            exchange.clientGone()
        }
        state = .idle
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard error is HTTPParserError else {
            context.close(promise: nil)
            return
        }
        // NIO's decoder refused the bytes (malformed, smuggling shapes, over a limit). Nothing
        // after them can be framed: the connection closes once the request they belong to is
        // answered, and pipelined requests behind them are dropped.
        closeAfterResponse = true
        queued.removeAll()
        switch state {
        case .idle:
            writeGatewayResponse(ErrorResponse.malformedRequest, version: .http1_1, isHEAD: false, keepAlive: false,
                                 requestID: RequestID.generate())
        case .proxying(let exchange):
            // In the body of a request being forwarded: that request fails with the 400 (the
            // upstream connection is closed). In a request pipelined behind it: the current
            // response is finished first, then the connection closes.
            exchange.clientRequestMalformed()
        case .discarding:
            // The request was answered already; its body is what broke.
            context.writeAndFlush(wrapOutboundOut(allocator.buffer(capacity: 0))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
    }

    fileprivate var clientWritable: Bool { context?.channel.isWritable ?? false }
    fileprivate var gatewayContext: GatewayContext { gateway }
    fileprivate var upstreamPool: UpstreamPool { pool }

    fileprivate func flushClient() {
        guard let context else { return }
        if let held = output.takeUnsent() { context.write(wrapOutboundOut(held), promise: nil) }
        context.flush()
    }

    fileprivate func closeClient() {
        // A response cut short: its held-back bytes go nowhere, like any write not yet flushed.
        _ = output.takeUnsent()
        context?.close(promise: nil)
    }

    fileprivate func markCloseAfterResponse() {
        closeAfterResponse = true
    }
}

// MARK: 3-4. One proxied exchange

/// A request accepted for forwarding: finds an upstream connection, streams the request body to
/// it, relays the response. Lives on the client's event loop; the upstream connection is on the
/// same loop.
private final class Exchange: UpstreamExchangeDelegate {
    private unowned let handler: ProxyHandler
    let route: CompiledRoute
    let clientHead: HTTPRequestHead
    let upstreamHead: UpstreamRequestHead
    var log: RequestLog
    let extraResponseHeaders: HTTPHeaders?

    private var upstream: UpstreamConnection?
    private var upstreamReused = false
    private var attempts = 0
    private var triedTarget: UpstreamTarget?
    /// Body parts that arrived before an upstream connection was ready.
    private var buffered: [ByteBuffer] = []
    private var bodyBytes = 0
    private(set) var clientRequestEnded = false
    private var upstreamRequestEnded = false
    private var responseHeadSent = false
    private var upstreamSentAt: NIODeadline?
    private var done = false

    init(handler: ProxyHandler, route: CompiledRoute, clientHead: HTTPRequestHead, upstreamHead: UpstreamRequestHead,
         log: RequestLog, extraResponseHeaders: HTTPHeaders?) {
        self.handler = handler
        self.route = route
        self.clientHead = clientHead
        self.upstreamHead = upstreamHead
        self.log = log
        self.extraResponseHeaders = extraResponseHeaders
    }

    var upstreamWritable: Bool { upstream?.channel.isWritable ?? false }
    var clientIsWritable: Bool { handler.clientWritable }

    // MARK: Finding an upstream connection

    func start() {
        // One clock reading serves the pick, the pool and the upstream timer (the clock showed in profiles).
        let now = NIODeadline.now()
        guard let target = route.selector.pick(now: now, excluding: triedTarget) else {
            return fail(.connectFailed("no upstream targets"))
        }
        attempts += 1
        triedTarget = target
        log.upstream = target.label
        let pool = handler.upstreamPool
        if let pooled = pool.takeIdle(target: target, settings: route.upstream, now: now) {
            attach(pooled, reused: true, sentAt: now)
            return
        }
        pool.connect(target: target, settings: route.upstream) { [self] result in
            // Once `done`, the client handler may be gone (`handler` is unowned): only `pool` is used.
            guard !done else {
                if case .success(let connection) = result { pool.release(connection, settings: route.upstream) }
                return
            }
            switch result {
            case .success(let connection):
                target.markHealthy()
                attach(connection, reused: false, sentAt: .now())
            case .failure(let error):
                target.eject(for: route.upstream.ejectFor, now: .now())
                handler.gatewayContext.metrics.upstreamFailure(route: route.config.name, kind: error.kind)
                // Nothing was sent: another target may take it.
                if attempts < 2, route.selector.targets.count > 1 {
                    start()
                } else {
                    fail(error)
                }
            }
        }
    }

    private func attach(_ connection: UpstreamConnection, reused: Bool, sentAt: NIODeadline) {
        upstream = connection
        upstreamReused = reused
        connection.handler.beginExchange(delegate: self)
        upstreamSentAt = sentAt
        if reused, !Self.isIdempotent(clientHead.method) {
            // A head that could not be written to a pooled connection left no byte of this request
            // at the gateway: even a non-idempotent request may then be retried. An idempotent one
            // needs no promise (a future, a callback and runtime metadata lookups per request):
            // the failed write closes the connection, and `upstreamFailed` retries it from there.
            let headWritten = handler.upstreamPool.eventLoop.makePromise(of: Void.self)
            connection.write(.head(upstreamHead), promise: headWritten, now: sentAt)
            headWritten.futureResult.assumeIsolated().whenFailure { [self] _ in
                guard upstream === connection, !done else { return }
                retryOnFreshConnection(after: connection)
            }
        } else {
            connection.write(.head(upstreamHead), now: sentAt)
        }
        for part in buffered {
            connection.write(.body(part))
        }
        buffered.removeAll()
        if clientRequestEnded { endUpstreamRequest() }
        connection.flush()
        handler.resumeClientReads()
    }

    /// A reused connection turned out dead before the request could be delivered: one retry on a
    /// fresh connection (and never for a request whose body already started streaming).
    private func retryOnFreshConnection(after dead: UpstreamConnection) -> Void {
        dead.close()
        upstream = nil
        guard upstreamReused, attempts < 3, bodyBytes == 0 else {
            return fail(.closedBeforeResponse)
        }
        handler.responseTimer?.cancel()
        upstreamRequestEnded = false
        attempts += 1
        let target = dead.target
        let pool = handler.upstreamPool
        pool.connect(target: target, settings: route.upstream) { [self] result in
            guard !done else {
                if case .success(let connection) = result { pool.release(connection, settings: route.upstream) }
                return
            }
            switch result {
            case .success(let connection): attach(connection, reused: false, sentAt: .now())
            case .failure(let error):
                target.eject(for: route.upstream.ejectFor, now: .now())
                fail(error)
            }
        }
    }

    // MARK: Request body, client → upstream

    func clientBody(_ body: ByteBuffer) {
        guard !done else { return }
        bodyBytes += body.readableBytes
        if bodyBytes > route.config.maxBodyBytes {
            handler.markCloseAfterResponse()
            return fail(nil, status: .payloadTooLarge, error: "payload_too_large", description: "the request body exceeds \(route.config.maxBodyBytes) bytes")
        }
        guard let upstream else {
            buffered.append(body)
            return
        }
        upstream.write(.body(body))
        upstream.flush()
    }

    func clientEnd() {
        clientRequestEnded = true
        guard !done, upstream != nil else { return }
        // A body framed by its length ends without bytes of its own: nothing to flush then.
        if endUpstreamRequest() { upstream?.flush() }
    }

    /// Returns whether the end wrote bytes (a chunked body's last chunk).
    @discardableResult
    private func endUpstreamRequest() -> Bool {
        guard !upstreamRequestEnded, let upstream else { return false }
        upstreamRequestEnded = true
        let wrote = upstream.write(.end)
        handler.responseTimer?.set(after: route.upstream.responseHeaderTimeout)
        return wrote
    }

    /// The client sent the body below the minimum rate (`RequestBodyRate`).
    func clientBodyTooSlow() {
        guard !clientRequestEnded else { return }
        guard !done else { return handler.closeClient() }
        log.reason = "request_body_too_slow"
        fail(nil, status: .requestTimeout, error: "request_timeout", description: "the request body arrived too slowly")
    }

    /// The client's bytes stopped parsing (see `ProxyHandler.errorCaught`).
    func clientRequestMalformed() {
        guard !clientRequestEnded else { return }
        let malformed = ErrorResponse.malformedRequest
        fail(nil, status: malformed.status, error: malformed.error, description: malformed.description)
    }

    func responseHeaderTimedOut() {
        guard !responseHeadSent, !done else { return }
        upstream?.close()
        fail(.responseHeaderTimeout)
    }

    func clientDrained() {
        upstream?.resumeReading()
    }

    func upstreamWritabilityChanged(isWritable: Bool) {
        if isWritable { handler.resumeClientReads() }
    }

    func clientGone() {
        guard !done else { return }
        done = true
        handler.responseTimer?.cancel()
        upstream?.close()
        upstream = nil
        log.status = 499
        log.reason = "client_closed"
        handler.finish(log: log, metrics: route.metrics, upstreamTime: nil)
    }

    // MARK: Response, upstream → client

    func upstreamResponseHead(_ head: UpstreamResponseHead) {
        guard !done else { return }
        handler.responseTimer?.cancel()
        responseHeadSent = true
        var response = HeaderRewriter.clientResponse(head, policy: route.headerPolicy, requestID: log.requestID,
                                                     extra: extraResponseHeaders, version: clientHead.version)
        let framing = HTTP1Writer.responseFraming(response, bodyless: clientHead.method == .HEAD)
        // An HTTP/1.0 client can only find the end of an unframed body by the connection closing.
        if framing == .close || !clientHead.isKeepAlive { handler.markCloseAfterResponse() }
        if handler.closesAfterResponse {
            response.fields.removeAll { HeaderNameSet.matches($0.name, "connection") }
            response.fields.append(("Connection", "close"))
        }
        log.status = Int(head.status.code)
        handler.writeResponseHead(response, framing: framing, bodyLength: response.contentLength)
    }

    func upstreamResponseBody(_ body: ByteBuffer) {
        guard !done else { return }
        handler.writeResponseBody(body)
    }

    func upstreamReadComplete() {
        if !done { handler.flushClient() }
    }

    func upstreamResponseEnd(keepAlive: Bool, now: NIODeadline) {
        guard !done else { return }
        done = true
        handler.responseTimer?.cancel()
        let upstreamTime = upstreamSentAt.map { now - $0 }
        if let upstream {
            // Reuse only a connection that finished a complete request and response in step.
            if keepAlive, upstreamRequestEnded {
                handler.upstreamPool.release(upstream, settings: route.upstream, now: now)
            } else {
                upstream.close()
            }
            self.upstream = nil
        }
        if !clientRequestEnded {
            // The upstream answered before the body was fully sent; the rest will be discarded.
            handler.markCloseAfterResponse()
        }
        handler.finish(log: log, metrics: route.metrics, upstreamTime: upstreamTime, now: now)
        handler.exchangeFinished(self, keepAlive: true, now: now)
    }

    func upstreamFailed(_ error: UpstreamError, responseStarted: Bool) {
        guard !done, let failed = upstream else { return }
        if !responseStarted, upstreamReused, case .closedBeforeResponse = error,
           bodyBytes == 0, Self.isIdempotent(clientHead.method) {
            // A pooled connection the upstream closed while idle (a keep-alive race): nothing of
            // this request reached the application, so one retry on a fresh connection is safe.
            return retryOnFreshConnection(after: failed)
        }
        fail(error)
    }

    // MARK: Failure

    private func fail(_ error: UpstreamError) {
        handler.gatewayContext.metrics.upstreamFailure(route: route.config.name, kind: error.kind)
        log.reason = error.kind
        fail(error, status: error.isTimeout ? .gatewayTimeout : .badGateway,
             error: error.isTimeout ? "upstream_timeout" : "bad_gateway",
             description: error.isTimeout ? "the upstream did not answer in time" : "the upstream is unavailable")
    }

    private func fail(_ error: UpstreamError?, status: HTTPResponseStatus, error code: String, description: String) {
        guard !done else { return }
        done = true
        handler.responseTimer?.cancel()
        upstream?.close()
        upstream = nil
        if responseHeadSent {
            // Too late for an error response: the client sees a truncated body and a closed connection.
            handler.closeClient()
            handler.finish(log: log, metrics: route.metrics, upstreamTime: nil)
            return
        }
        if !clientRequestEnded { handler.markCloseAfterResponse() }
        log.status = Int(status.code)
        log.reason = log.reason ?? code
        handler.writeGatewayResponse(ErrorResponse(status: status, error: code, description: description),
                                     to: clientHead, requestID: log.requestID)
        handler.finish(log: log, metrics: route.metrics, upstreamTime: nil)
        handler.exchangeFinishedAfterGatewayResponse(self)
    }

    private static func isIdempotent(_ method: HTTPMethod) -> Bool {
        switch method {
        case .GET, .HEAD, .OPTIONS, .DELETE, .PUT, .TRACE: true
        default: false
        }
    }
}

extension ProxyHandler {
    /// After a gateway-written error mid-exchange the state machine must drop the rest of the body.
    fileprivate func exchangeFinishedAfterGatewayResponse(_ exchange: Exchange) {
        settle(exchange)
    }
}
