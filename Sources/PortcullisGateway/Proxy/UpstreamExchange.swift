import NIOCore
import NIOHTTP1

/// A request admitted for forwarding: finds an upstream connection, streams the request body to
/// it, relays the response to its `downstream` — the protocol side that carries the client's
/// request (`ExchangeDownstream`) — and retries where that is safe. Knows nothing of how the
/// client's protocol frames a response. Lives on the downstream's event loop; the upstream
/// connection is on the same loop.
final class UpstreamExchange: UpstreamExchangeDelegate {
    /// Unowned: the downstream owns the exchange while it runs. It may go first (an HTTP/2 stream's
    /// handler does when the stream closes), but only after its close set `done`, so every use
    /// after the exchange could have ended checks `done` first.
    private unowned let downstream: any ExchangeDownstream
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
    private(set) var responseHeadSent = false
    private var upstreamSentAt: NIODeadline?
    private var done = false

    init(downstream: any ExchangeDownstream, route: CompiledRoute, clientHead: HTTPRequestHead, upstreamHead: UpstreamRequestHead,
         log: RequestLog, extraResponseHeaders: HTTPHeaders?) {
        self.downstream = downstream
        self.route = route
        self.clientHead = clientHead
        if let trace = log.trace {
            var traced = upstreamHead
            trace.startExchange(route: route.config.name, fields: &traced.fields)
            self.upstreamHead = traced
        } else {
            self.upstreamHead = upstreamHead
        }
        self.log = log
        self.extraResponseHeaders = extraResponseHeaders
    }

    var upstreamWritable: Bool { upstream?.isWritable ?? false }
    /// Once the exchange is done the downstream may be gone (it is unowned): nothing holds reads then.
    var clientIsWritable: Bool { done || downstream.isWritable }

    // MARK: Finding an upstream connection

    func start() {
        // One clock reading serves the pick, the pool and the upstream timer (the clock showed in profiles).
        let now = NIODeadline.now()
        guard let target = route.selector.pick(now: now, excluding: triedTarget) else {
            return fail(.connectFailed("no upstream targets"))
        }
        attempts += 1
        triedTarget = target
        log.tries(target.label)
        let pool = downstream.upstreamPool
        if let pooled = pool.takeIdle(target: target, settings: route.upstream, now: now) {
            attach(pooled, reused: true, sentAt: now)
            return
        }
        pool.connect(target: target, settings: route.upstream) { [self] result in
            // Once `done`, the downstream may be gone (it is unowned): only `pool` is used.
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
                downstream.metrics.upstreamFailure(route: route.config.name, kind: error.kind)
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
        connection.handler.beginExchange(delegate: self, idleTimeout: route.upstream.idleTimeout)
        upstreamSentAt = sentAt
        if reused, !Self.isIdempotent(clientHead.method) {
            // A head that could not be written to a pooled connection left no byte of this request
            // at the gateway: even a non-idempotent request may then be retried. An idempotent one
            // needs no promise (a future, a callback and runtime metadata lookups per request):
            // the failed write closes the connection, and `upstreamFailed` retries it from there.
            let headWritten = downstream.upstreamPool.eventLoop.makePromise(of: Void.self)
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
        downstream.resumeRequestReads()
    }

    /// A reused connection turned out dead before the request could be delivered: one retry on a
    /// fresh connection (and never for a request whose body already started streaming).
    private func retryOnFreshConnection(after dead: UpstreamConnection) -> Void {
        dead.close()
        upstream = nil
        guard upstreamReused, attempts < 3, bodyBytes == 0 else {
            return fail(.closedBeforeResponse)
        }
        downstream.cancelResponseHeaderTimeout()
        upstreamRequestEnded = false
        attempts += 1
        let target = dead.target
        let pool = downstream.upstreamPool
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
        log.bytesIn = bodyBytes
        if bodyBytes > route.config.maxBodyBytes {
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
        downstream.armResponseHeaderTimeout(after: route.upstream.responseHeaderTimeout)
        return wrote
    }

    /// The client sent the body below the minimum rate (`RequestBodyRate`).
    func clientBodyTooSlow() {
        guard !clientRequestEnded else { return }
        guard !done else { return downstream.closeDownstream() }
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
        if isWritable, !done { downstream.resumeRequestReads() }
    }

    /// The client went away: nothing more is sent either way.
    func clientGone() {
        guard !done else { return }
        done = true
        downstream.cancelResponseHeaderTimeout()
        upstream?.close()
        upstream = nil
        log.status = 499
        log.reason = "client_closed"
        downstream.exchangeAborted(self)
    }

    /// The request's token ended (`LiveSessions`): the upstream connection is closed and nothing
    /// more is relayed. Returns the log to record (401 when no response had begun), nil when the
    /// exchange was already over. The downstream answers the client itself.
    func abandon(reason: String) -> RequestLog? {
        guard !done else { return nil }
        done = true
        downstream.cancelResponseHeaderTimeout()
        upstream?.close()
        upstream = nil
        if !responseHeadSent { log.status = 401 }
        log.reason = reason
        return log
    }

    // MARK: Response, upstream → client

    func upstreamResponseHead(_ head: UpstreamResponseHead) {
        guard !done else { return }
        downstream.cancelResponseHeaderTimeout()
        log.trace?.upstreamStatus = Int(head.status.code)
        guard downstream.sendResponseHead(head, of: self) else {
            return fail(.protocolError("a response head too large for one HTTP/2 frame"))
        }
        responseHeadSent = true
        log.status = Int(head.status.code)
    }

    func upstreamResponseBody(_ body: ByteBuffer) {
        guard !done else { return }
        log.bytesOut += body.readableBytes
        downstream.sendResponseBody(body)
    }

    func upstreamReadComplete() {
        if !done { downstream.flushResponse() }
    }

    func upstreamResponseEnd(keepAlive: Bool, now: NIODeadline) {
        guard !done else { return }
        done = true
        downstream.cancelResponseHeaderTimeout()
        let upstreamTime = upstreamSentAt.map { now - $0 }
        if let upstream {
            // Reuse only a connection that finished a complete request and response in step.
            if keepAlive, upstreamRequestEnded, !upstreamHead.closesConnection {
                downstream.upstreamPool.release(upstream, settings: route.upstream, now: now)
            } else {
                // The response is whole: a reset loses nothing, and leaves no TIME_WAIT at the
                // gateway for each such exchange (a client sending HEADs would otherwise use up
                // the ports toward a target).
                upstream.closeAbortively()
            }
            self.upstream = nil
        }
        downstream.exchangeCompleted(self, upstreamTime: upstreamTime, now: now)
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
        // Done, the downstream (unowned) may be gone.
        guard !done else { return }
        downstream.metrics.upstreamFailure(route: route.config.name, kind: error.kind)
        log.reason = error.kind
        let answer = error.clientAnswer
        fail(error, status: answer.status, error: answer.error, description: answer.description)
    }

    private func fail(_ error: UpstreamError?, status: HTTPResponseStatus, error code: String, description: String) {
        guard !done else { return }
        done = true
        downstream.cancelResponseHeaderTimeout()
        upstream?.close()
        upstream = nil
        if responseHeadSent {
            // A head not yet written (a malformed body in the same read as the head) is taken
            // back and the client gets the error response; otherwise it is too late for one, and
            // the client sees a truncated response.
            guard downstream.retractUnsentResponse() else {
                downstream.exchangeAborted(self)
                return
            }
            responseHeadSent = false
        }
        log.status = Int(status.code)
        log.reason = log.reason ?? code
        downstream.exchangeFailed(self, with: ErrorResponse(status: status, error: code, description: description))
    }

    private static func isIdempotent(_ method: HTTPMethod) -> Bool {
        switch method {
        case .GET, .HEAD, .OPTIONS, .DELETE, .PUT, .TRACE: true
        default: false
        }
    }
}
