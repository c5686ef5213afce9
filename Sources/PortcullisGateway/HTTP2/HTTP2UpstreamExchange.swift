import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2

/// A request on a client's HTTP/2 stream forwarded on a stream of an HTTP/2 upstream
/// (`upstream.protocol: h2` or `h2c`) — the way gRPC passes: request and response stream both
/// ways as they arrive, and the upstream's trailers (`grpc-status`) reach the client. The
/// request goes as frames (`HeaderRewriter.http2UpstreamRequest`; the end of the request rides on
/// its last frame, as NIO's codec did), and the upstream stream's `HTTP2UpstreamStreamHandler`
/// reads the response's frames and reports here. Flow control runs end to end as on the HTTP/1.1 path: the client stream's
/// reads wait for the upstream stream to be writable, and the upstream stream's reads wait for the
/// client stream to be. A request goes a second time when nothing of it reached the application:
/// its stream refused unprocessed (`HTTP2StreamRefusal`) — on another connection and target if
/// there is one, with the body kept for it (`ResendableBody`) — or its connect failed, to another
/// target. Any other failure is not retried: that stream may have reached the application.
/// Confined to the client connection's event loop; the upstream connection is on the same loop.
final class HTTP2UpstreamExchange {
    /// Unowned: the downstream owns the exchange while it runs. It may go first (an HTTP/2 stream's
    /// handler does when the stream closes), but only after its close set `done`, so every use
    /// after the exchange could have ended checks `done` first.
    private unowned let downstream: HTTP2StreamHandler
    let route: CompiledRoute
    let clientHead: HTTPRequestHead
    /// The request's header block for the upstream.
    private let requestBlock: HPACKHeaders
    var log: RequestLog
    /// The route's fields for every answer (CORS, rate-limit state).
    let extraResponseHeaders: HTTPHeaders?
    private let pool: UpstreamPool

    private var stream: (any Channel)?
    /// The target the request went to.
    private var target: UpstreamTarget?
    /// The body sent so far, for a second try if the upstream refuses the stream.
    private var sentBody = ResendableBody()
    /// The request went a second time — after a refusal, or to another target after a failed
    /// connect: one more failure fails it.
    private var retried = false
    /// Joined body parts waiting for the upstream stream to open.
    private var buffered: [ByteBuffer] = []
    /// The body parts of the client's read, joined and written at its end (or with the request's
    /// end, which they then carry: one frame fewer for a request read whole).
    private var joiner = HTTP2RequestBodyJoiner()
    /// Joined parts went to the upstream stream during the client's read, not yet flushed.
    private var unflushed = false
    /// The body's writes, joined across reads while the upstream stream is behind (`SmallWrites`).
    private var writes = SmallWrites()
    private var bodyBytes = 0
    private(set) var clientRequestEnded = false
    private var sentAt: NIODeadline?
    private(set) var responseStarted = false
    private var done = false
    /// The status fields of a gRPC "Trailers-Only" response (one HEADERS frame that ends the
    /// stream), sent to the client as trailers: the server codec cannot end a stream with its
    /// head, and a gRPC client reads a status only at the end.
    private var statusFromHead: HTTPHeaders?

    init(downstream: HTTP2StreamHandler, pool: UpstreamPool, route: CompiledRoute, clientHead: HTTPRequestHead,
         upstreamHead: UpstreamRequestHead, log: RequestLog, extraResponseHeaders: HTTPHeaders?) {
        self.downstream = downstream
        self.pool = pool
        self.route = route
        self.clientHead = clientHead
        var head = upstreamHead
        log.trace?.startExchange(route: route.config.name, fields: &head.fields)
        self.requestBlock = HeaderRewriter.http2UpstreamRequest(head, clientHead: clientHead, scheme: route.upstream.tls == nil ? "http" : "https")
        self.log = log
        self.extraResponseHeaders = extraResponseHeaders
    }

    var upstreamWritable: Bool { (stream?.isWritable ?? false) && !writes.holdsTooMuch }

    func start() {
        guard HTTP2HeaderBlockSize.fitsOneFrame(requestBlock) else {
            return fail(nil, status: .requestHeaderFieldsTooLarge, error: "request_header_fields_too_large",
                        description: "the request's header fields, encoded for the upstream, exceed one HTTP/2 frame")
        }
        let now = NIODeadline.now()
        guard let target = route.selector.pick(now: now, excluding: nil) else {
            return fail(.connectFailed("no upstream targets"))
        }
        open(to: target)
    }

    private func open(to target: UpstreamTarget) {
        self.target = target
        log.tries(target.label)
        pool.http2.openStream(target: target, settings: route.upstream, initialize: { [self] channel in
            try channel.pipeline.syncOperations.addHandler(HTTP2UpstreamStreamHandler(exchange: self))
        }, completion: { [self] result in
            guard !done else {
                if case .success(let channel) = result { channel.close(promise: nil) }
                return
            }
            switch result {
            case .success(let channel):
                target.markHealthy()
                attach(channel)
            case .failure(let error):
                if case .poolFull = error { return fail(error) }
                target.eject(for: route.upstream.ejectFor, now: .now())
                // Nothing reached the upstream: another target takes the request, once, as over
                // HTTP/1.1 (the failure still counts).
                let now = NIODeadline.now()
                if !retried, let other = route.selector.pick(now: now, excluding: target), !other.isEjected(now: now) {
                    retried = true
                    sentBody.release()
                    downstream.metrics.upstreamFailure(route: route.config.name, kind: error.kind)
                    return open(to: other)
                }
                fail(error)
            }
        })
    }

    private func attach(_ channel: any Channel) {
        stream = channel
        sentAt = .now()
        // A request without a body ends with its HEADERS frame.
        let endsWithHead = clientRequestEnded && buffered.isEmpty && joiner.isEmpty
        // A stream swift-nio-http2 held back (the upstream at its concurrent-stream limit) and
        // opens after the upstream's GOAWAY fails here: the request goes again (or fails at once,
        // 502) rather than wait out the response-header timeout on a stream the upstream never
        // saw. Any other failed write fails the request: it may have reached the upstream.
        let headersWritten = channel.eventLoop.makePromise(of: Void.self)
        headersWritten.futureResult.assumeIsolated().whenFailure { [self] error in
            upstreamClosed(channel, refused: HTTP2StreamRefusal.headersUnsent(error))
            channel.close(promise: nil)
        }
        channel.write(HTTP2Frame.FramePayload.headers(.init(headers: requestBlock, endStream: endsWithHead)), promise: headersWritten)
        // A stream channel queues writes until the flush, where a refused HEADERS fails; should
        // one ever fail here, the request went again from what `sentBody` kept.
        guard stream === channel else { return }
        let parts = buffered
        buffered.removeAll()
        for part in parts { writeData(part, on: channel) }
        if clientRequestEnded {
            if !endsWithHead { writeEnd(on: channel) }
            downstream.armResponseHeaderTimeout(after: route.upstream.responseHeaderTimeout)
        } else if let joined = takeJoined() {
            writeData(joined, on: channel)
        }
        channel.flush()
        // The flush may have failed the exchange (the downstream may then go), or had the request
        // sent again, whose stream resumes the reads when it opens.
        guard !done, stream === channel else { return }
        downstream.resumeRequestReads()
    }

    /// What the joiner holds, kept for a second try as it goes.
    private func takeJoined() -> ByteBuffer? {
        guard let joined = joiner.take() else { return nil }
        sentBody.sent(joined)
        return joined
    }

    /// Ends the request: on its last DATA frame, or an empty one, after what is held.
    private func writeEnd(on channel: any Channel) {
        if let held = writes.drain() { channel.write(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(held))), promise: nil) }
        let last = takeJoined() ?? channel.allocator.buffer(capacity: 0)
        channel.write(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(last), endStream: true)), promise: nil)
    }

    /// A DATA frame, or the bytes held while a watched write waits (the upstream's window shut).
    private func writeData(_ data: ByteBuffer, on channel: any Channel) {
        switch writes.take(data, allocator: channel.allocator) {
        case .write(let bytes, let watched):
            channel.write(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(bytes))), promise: watched ? watchedWrite(on: channel) : nil)
        case .held:
            break
        }
    }

    /// A promise for a watched DATA frame: once the upstream stream took it, what was held
    /// meanwhile goes, and the client is read again if holding had stopped it.
    private func watchedWrite(on channel: any Channel) -> EventLoopPromise<Void> {
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.assumeIsolated().whenSuccess { [self] in
            // A stream refused and left behind: `writes` is the new stream's.
            guard stream === channel else { return }
            let completion = writes.watchedWriteCompleted()
            guard let next = completion.next, !done else { return }
            channel.write(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(next))), promise: watchedWrite(on: channel))
            channel.flush()
            // The flush may have failed the exchange (the downstream, unowned, may then go).
            if completion.resumesFeed, !done { downstream.resumeRequestReads() }
        }
        return written
    }

    // MARK: Client → upstream

    func clientBody(_ body: ByteBuffer) {
        guard !done else { return }
        bodyBytes += body.readableBytes
        log.bytesIn = bodyBytes
        if bodyBytes > route.config.maxBodyBytes {
            return fail(nil, status: .payloadTooLarge, error: "payload_too_large", description: "the request body exceeds \(route.config.maxBodyBytes) bytes")
        }
        // An empty DATA frame carries nothing, and an upstream on swift-nio-http2 takes two in a
        // row for a flood (ENHANCE_YOUR_CALM), closing the connection with everyone's calls on it.
        guard body.readableBytes > 0, let joined = joiner.add(body) else { return }
        sentBody.sent(joined)
        guard let stream else { return buffered.append(joined) }
        writeData(joined, on: stream)
        unflushed = true
    }

    func clientEnd() {
        clientRequestEnded = true
        guard !done, let stream else { return }
        writeEnd(on: stream)
        stream.flush()
        // The flush may have failed the exchange, or had the request sent again (a refused HEADERS
        // fails as it is flushed), which arms the timeout itself.
        guard !done, self.stream === stream else { return }
        downstream.armResponseHeaderTimeout(after: route.upstream.responseHeaderTimeout)
    }

    /// The client's stream read what it had: the read's joined body goes, and is flushed.
    func clientReadComplete() {
        guard !done, let stream else { return }
        if let joined = takeJoined() {
            writeData(joined, on: stream)
        } else if !unflushed {
            return
        }
        unflushed = false
        stream.flush()
    }

    /// The client reset its stream or went away: the upstream stream is reset too.
    func clientGone() {
        guard !done else { return }
        done = true
        downstream.cancelResponseHeaderTimeout()
        stream?.close(promise: nil)
        stream = nil
        log.status = 499
        log.reason = "client_closed"
        downstream.exchangeAborted(log: log, route: route)
    }

    /// Ends the exchange from the client's side for `reason` (its token ended): the upstream stream
    /// is reset. Returns the request's log for the caller to record, nil when already over.
    func abandon(reason: String) -> RequestLog? {
        guard !done else { return nil }
        done = true
        downstream.cancelResponseHeaderTimeout()
        stream?.close(promise: nil)
        stream = nil
        if !responseStarted { log.status = 401 }
        log.reason = reason
        return log
    }

    func clientDrained() {
        stream?.read()
    }

    /// The client sent the body below the minimum rate (`RequestBodyRate`): 408 before the
    /// response began, the client's stream cut after; the upstream stream is reset either way.
    func clientBodyTooSlow() {
        guard !clientRequestEnded, !done else { return }
        log.reason = "request_body_too_slow"
        fail(nil, status: .requestTimeout, error: "request_timeout", description: "the request body arrived too slowly")
    }

    func responseHeaderTimedOut() {
        guard !responseStarted, !done else { return }
        fail(.responseHeaderTimeout)
    }

    // MARK: Upstream → client (from `HTTP2UpstreamStreamHandler`)

    /// Once the exchange is done the downstream may be gone (it is unowned): nothing holds reads then.
    var clientIsWritable: Bool { done || downstream.isWritable }

    /// The response's head (not an informational one).
    func upstreamHead(status: HTTPResponseStatus, fields block: HPACKHeaders) {
        guard !done else { return }
        downstream.cancelResponseHeaderTimeout()
        var fields = HeaderRewriter.http2ClientFields(block, policy: route.headerPolicy, requestID: log.requestID,
                                                      extra: extraResponseHeaders)
        if fields.contains(name: "grpc-status") {
            var status = HTTPHeaders()
            for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
                for value in fields[name] { status.add(name: name, value: value) }
                fields.remove(name: name)
            }
            statusFromHead = status
        }
        guard downstream.sendResponseHead(HTTPResponseHead(version: .http2, status: status, headers: fields)) else {
            return fail(.protocolError("a response head too large for one HTTP/2 frame"))
        }
        responseStarted = true
        sentBody.release()
        log.status = Int(status.code)
        log.trace?.upstreamStatus = log.status
    }

    func upstreamBody(_ body: ByteBuffer) {
        guard !done else { return }
        log.bytesOut += body.readableBytes
        downstream.sendResponseBody(body)
    }

    func upstreamReadComplete() {
        if !done { downstream.flushResponse() }
    }

    func upstreamEnd(trailers: HPACKHeaders?) {
        guard !done else { return }
        let now = NIODeadline.now()
        // Trailers without the fields no trailer may carry (`TrailerFields`); none left, none sent
        // (the stream ends with an empty DATA frame rather than an empty HEADERS frame).
        let passed = trailers.map {
            HeaderRewriter.http2ClientFields($0, policy: route.headerPolicy, requestID: nil, extra: nil, dropping: TrailerFields.prohibited)
        }.flatMap { $0.isEmpty ? nil : $0 } ?? statusFromHead
        // The upstream answered before the request's end: the rest of the request goes nowhere,
        // so the upstream stream is reset rather than left half open (holding one of the
        // upstream's concurrent streams) until the upstream resets it, if it ever does. Not at
        // once: an upstream's own RST_STREAM often arrives in the same read, after the trailers,
        // and a closed stream must not be reset in answer (RFC 9113 §5.4.2).
        if !clientRequestEnded, let stream {
            stream.eventLoop.assumeIsolated().execute { stream.close(promise: nil) }
        }
        stream = nil
        // Trailers that would not fit one HEADERS frame once re-encoded (as a head may not, above)
        // cut the client's stream: the response is under way, and sent they would close the
        // client's connection.
        if let passed, !HTTP2HeaderBlockSize.fitsOneFrame(passed) {
            return fail(.protocolError("trailers too large for one HTTP/2 frame"))
        }
        done = true
        downstream.cancelResponseHeaderTimeout()
        downstream.exchangeCompleted(log: log, route: route, trailers: passed, upstreamTime: sentAt.map { now - $0 }, now: now)
    }

    func upstreamWritabilityChanged(isWritable: Bool) {
        if isWritable, !done { downstream.resumeRequestReads() }
    }

    /// The upstream's response broke a rule `HTTP2UpstreamStreamHandler` checks (`why`); the
    /// handler resets the stream (PROTOCOL_ERROR) itself.
    func upstreamMalformed(_ why: String) {
        guard !done else { return }
        downstream.metrics.upstreamHTTP2StreamErrors.increment()
        stream = nil
        fail(.protocolError(why))
    }

    /// The upstream stream `channel` ended without a complete response (reset, connection lost);
    /// `refused`: unprocessed (`HTTP2StreamRefusal`). A stream this exchange left behind (one
    /// refused and sent again) is no longer its concern.
    func upstreamClosed(_ channel: any Channel, refused: Bool) {
        guard !done, stream === channel else { return }
        stream = nil
        if refused {
            guard !responseStarted, !retried, sentBody.canResend, let target else { return fail(.refusedStream) }
            return resend(sentBody.kept, after: target, on: channel.eventLoop)
        }
        fail(responseStarted ? .closedMidResponse : .closedBeforeResponse)
    }

    /// Sends the request again on a new stream: to another target if one is healthy, else to the
    /// same. What was written or held for the refused stream goes again from `body`, and what
    /// the client sends meanwhile waits behind it. On the next tick: a GOAWAY's refusals arrive
    /// while swift-nio-http2 reads the frame, before the pool learns the connection is leaving,
    /// and a stream opened on it then would be refused again.
    private func resend(_ body: ByteBuffer?, after refused: UpstreamTarget, on eventLoop: any EventLoop) {
        retried = true
        sentBody.release()
        downstream.metrics.upstreamHTTP2StreamsResent.increment()
        downstream.cancelResponseHeaderTimeout()
        buffered = body.map { [$0] } ?? []
        writes = SmallWrites()
        unflushed = false
        eventLoop.assumeIsolated().execute { [self] in
            guard !done else { return }
            let now = NIODeadline.now()
            let other = route.selector.pick(now: now, excluding: refused).flatMap { $0.isEjected(now: now) ? nil : $0 }
            open(to: other ?? refused)
        }
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
        stream?.close(promise: nil)
        stream = nil
        if responseStarted {
            downstream.exchangeAborted(log: log, route: route)
            return
        }
        log.status = Int(status.code)
        log.reason = log.reason ?? code
        // The route's fields (CORS, rate-limit state) go on a 502/504 too.
        downstream.exchangeFailed(log: log, route: route,
                                  with: ErrorResponse(status: status, error: code, description: description).adding(extraResponseHeaders))
    }
}
