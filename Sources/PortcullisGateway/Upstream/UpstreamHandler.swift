import NIOCore

/// The upstream channel's HTTP/1.1 endpoint (after TLS, if any): writes requests with
/// `HTTP1Writer`, parses responses with `UpstreamResponseParser`, hands the parts to the
/// current exchange's delegate, and pauses reads while the client cannot take more bytes.
final class UpstreamHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The exchange in progress; nil while the connection sits idle in the pool. Strong, not weak
    /// (see DeadlineTimer on side tables): every way an exchange ends clears it — the response
    /// end, `endExchange` (release or close), a failure, or the channel closing.
    var delegate: (any UpstreamExchangeDelegate)?
    private(set) var responseStarted = false
    private(set) var isClosed = false
    private var pendingRead = false
    private var parser = UpstreamResponseParser()
    private var writer = HTTP1Writer()
    /// The request body's small writes, joined while the upstream is behind (`SmallWrites`).
    private var bodyWrites = SmallWrites()
    /// Called when the channel closes while idle, so the pool can forget it. Set once by the
    /// pool; dropped when the channel closes.
    var onIdleClose: (() -> Void)?
    /// No bytes either way for this long ends the exchange (or closes an idle pooled connection):
    /// the `idle_timeout` of the route whose exchange runs, or ran last (routes with different
    /// timeouts share a target's pooled connections). A lazy deadline rather than NIO's
    /// IdleStateHandler, which timestamps every read and write.
    private var idleTimeout: TimeAmount
    private var idleTimer: DeadlineTimer?
    private var context: ChannelHandlerContext?
    /// The channel's allocator, looked up once (each `channel.allocator` read costs a few retains).
    private var allocator = ByteBufferAllocator()

    init(idleTimeout: TimeAmount) {
        self.idleTimeout = idleTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        allocator = context.channel.allocator
        // Strong capture: `handlerRemoved` stops the timer, which breaks the cycle (see DeadlineTimer).
        idleTimer = DeadlineTimer(eventLoop: context.eventLoop) { [self] in idleTimedOut() }
        idleTimer?.set(after: idleTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idleTimer?.stop()
        idleTimer = nil
        self.context = nil
        delegate = nil
        onIdleClose = nil
    }

    private func idleTimedOut() {
        fail(.idleTimeout)
        context?.close(promise: nil)
    }

    /// Starts an exchange under its route's `idle_timeout` (the request's first write arms it).
    func beginExchange(delegate: any UpstreamExchangeDelegate, idleTimeout: TimeAmount) {
        self.delegate = delegate
        self.idleTimeout = idleTimeout
        responseStarted = false
    }

    func endExchange() {
        delegate = nil
    }

    // MARK: Request

    /// Writes one part of the request; `promise` completes when its bytes were written (a body
    /// part given one is written alone, not joined). Bytes written move the idle timer,
    /// from `now` if the caller just read the clock. Returns whether any bytes were written, i.e.
    /// whether a flush has something to send.
    @discardableResult
    func write(_ part: UpstreamRequestPart, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext,
               now: NIODeadline? = nil) -> Bool {
        switch part {
        case .head(let head):
            bytesWritten(at: now)
            parser.expectResponse(to: head.method)
            context.write(wrapOutboundOut(writer.request(head, allocator: allocator)), promise: promise)
        case .body(let body):
            bytesWritten(at: now)
            if let promise {
                // What is held goes first; this part is written as it is, for its promise.
                if let held = bodyWrites.drain() { writeBody(held, watched: false, promise: nil, context: context) }
                writeBody(body, watched: false, promise: promise, context: context)
                return true
            }
            switch bodyWrites.take(body, allocator: allocator) {
            case .write(let bytes, let watched): writeBody(bytes, watched: watched, promise: nil, context: context)
            case .held: return false
            }
        case .end:
            // What is held goes before the end; a watched write still waiting is ahead of it.
            let held = bodyWrites.drain()
            if let held { writeBody(held, watched: false, promise: nil, context: context) }
            // An end that writes nothing (a body framed by its length) leaves the idle timer
            // where it was, and saves a clock read.
            guard let end = writer.end(allocator: allocator) else {
                promise?.succeed()
                return held != nil
            }
            bytesWritten(at: now)
            context.write(wrapOutboundOut(end), promise: promise)
        }
        return true
    }

    /// Body bytes, framed as one chunk if the body is chunked; a watched write tells
    /// `bodyWrites` when the socket took it.
    private func writeBody(_ body: ByteBuffer, watched: Bool, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext) {
        if let prefix = writer.chunkPrefix(for: body, allocator: allocator) {
            context.write(wrapOutboundOut(prefix), promise: nil)
        }
        var promise = promise
        if watched {
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.assumeIsolated().whenSuccess { [self] in watchedBodyWriteCompleted() }
            promise = written
        }
        context.write(wrapOutboundOut(body), promise: promise)
        if let suffix = writer.chunkSuffix(for: body, allocator: allocator) {
            context.write(wrapOutboundOut(suffix), promise: nil)
        }
    }

    /// The upstream took a watched write: what was held meanwhile goes, and if that was too much
    /// to read on, the client's side is read again. (A failed write closes the connection: nothing
    /// is written after it.)
    private func watchedBodyWriteCompleted() {
        let completion = bodyWrites.watchedWriteCompleted()
        guard let next = completion.next, let context else { return }
        writeBody(next, watched: true, promise: nil, context: context)
        context.flush()
        if completion.resumesFeed, context.channel.isWritable { delegate?.upstreamWritabilityChanged(isWritable: true) }
    }

    /// Whether the request may be fed more bytes: the channel is writable and not too much is held.
    var isWritable: Bool { (context?.channel.isWritable ?? false) && !bodyWrites.holdsTooMuch }

    /// Written bytes are activity: the idle timer starts over, from `now` when the caller has it.
    private func bytesWritten(at now: NIODeadline?) {
        idleTimer?.set((now ?? .now()) + idleTimeout)
    }

    // MARK: Response

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // One clock reading per read serves the idle timer and, at a response's end, its latency.
        let now = NIODeadline.now()
        idleTimer?.set(now + idleTimeout)
        guard delegate != nil, parser.isExpectingBytes else {
            // Bytes on an idle pooled connection: the upstream is out of step. Do not reuse it.
            isClosed = true
            context.close(promise: nil)
            return
        }
        parser.append(unwrapInboundIn(data))
        do {
            while let event = try parser.next() {
                // The delegate may end the exchange (and close the connection) on any event.
                guard let delegate else { return }
                switch event {
                case .head(let head):
                    responseStarted = true
                    delegate.upstreamResponseHead(head)
                case .body(let body):
                    delegate.upstreamResponseBody(body)
                case .end(let reusable):
                    if !reusable { isClosed = true }
                    self.delegate = nil
                    delegate.upstreamResponseEnd(keepAlive: reusable && !isClosed, now: now)
                }
            }
        } catch {
            fail(.protocolError("\(error)"))
            context.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        delegate?.upstreamReadComplete()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        delegate?.upstreamWritabilityChanged(isWritable: isWritable)
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if let delegate, !delegate.clientIsWritable {
            pendingRead = true
            return
        }
        context.read()
    }

    /// Resumes reading once the client side drained.
    func resumeReading(context: ChannelHandlerContext) {
        if pendingRead {
            pendingRead = false
            context.read()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        isClosed = true
        idleTimer?.stop()
        if let delegate {
            // A body delimited by the connection closing ends here; anything else was cut short.
            do {
                if case .end = try parser.inputClosed() {
                    self.delegate = nil
                    delegate.upstreamResponseEnd(keepAlive: false, now: .now())
                } else {
                    fail(responseStarted ? .closedMidResponse : .closedBeforeResponse)
                }
            } catch {
                fail(responseStarted ? .closedMidResponse : .closedBeforeResponse)
            }
        } else {
            onIdleClose?()
        }
        onIdleClose = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail("\(type(of: error))".contains("SSL") ? .tls("\(error)") : responseStarted ? .closedMidResponse : .closedBeforeResponse)
        context.close(promise: nil)
    }

    /// Ends the current exchange with `error`, if there is one.
    private func fail(_ error: UpstreamError) {
        guard let delegate else { return }
        self.delegate = nil
        delegate.upstreamFailed(error, responseStarted: responseStarted)
    }
}
