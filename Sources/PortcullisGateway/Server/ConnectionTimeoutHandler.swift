import NIOCore

/// The client connection's own deadlines, which are not any one request's:
/// - **head read** — a head must arrive whole within `limits.header_read_timeout` of its first
///   byte (slowloris);
/// - **idle** — between requests, the next must start within `limits.idle_timeout`;
/// - **response write** — once the channel's outbound buffer is over its high-water mark, or a
///   small write the response's others are held behind (`SmallWrites`) was not taken at a flush,
///   the client has `limits.response_write_timeout` to drain it (below the low-water mark; the
///   held write taken). Without this a client that never reads holds its connection, and the
///   upstream connection behind it (whose reads stop with backpressure), indefinitely. The
///   connection is then reset (`AbortiveClose`), so the kernel lets go of what it held for it.
///
/// One handler rather than one per deadline: every read of every request passes each inbound
/// handler, and a handler hop is measurable on the request path. Sits before the HTTP decoder so
/// it sees the first byte of each request; the request path tells it when a head was parsed and
/// when an exchange ended. While the node is overloaded (`MemoryGuard`) the response-write
/// deadline is cut short (`OverloadShedding`) for a client that is not taking its response by
/// what its TCP stack acknowledges (`ClientProgress`). Event-loop confined.
final class ConnectionTimeoutHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private enum Phase {
        /// Between requests: the idle timeout runs until the first byte of the next head.
        case idle
        /// Some bytes of a head arrived: the head-read timeout runs.
        case readingHead
        /// A request is being handled: no timer (upstream timeouts apply).
        case busy
    }

    private let headReadTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private let responseWriteTimeout: TimeAmount
    private let onWriteTimeout: () -> Void
    private var phase = Phase.readingHead
    private var timer: DeadlineTimer?
    private var writeTimer: DeadlineTimer?
    /// A held response write waits (`heldResponseWrite`).
    private var heldWriteWaits = false
    private var context: ChannelHandlerContext?
    /// The event loop's connections the overload guard may cut short; joined while in the pipeline.
    private let shedding: OverloadSheddingSet?
    /// What the overload guard saw the client acknowledge, while a response waits on it.
    private var progress: ClientProgress?

    /// `onWriteTimeout` runs (to count it) before a connection is closed for not taking its response.
    init(headReadTimeout: TimeAmount, idleTimeout: TimeAmount, responseWriteTimeout: TimeAmount, shedding: OverloadSheddingSet? = nil,
         onWriteTimeout: @escaping () -> Void) {
        self.headReadTimeout = headReadTimeout
        self.idleTimeout = idleTimeout
        self.responseWriteTimeout = responseWriteTimeout
        self.shedding = shedding
        self.onWriteTimeout = onWriteTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        shedding?.add(self)
        // Strong captures: `handlerRemoved` stops the timers, which breaks the cycles (see DeadlineTimer).
        timer = DeadlineTimer(eventLoop: context.eventLoop) { [self] in
            guard phase != .busy else { return }
            self.context?.close(promise: nil)
        }
        writeTimer = DeadlineTimer(eventLoop: context.eventLoop) { [self] in
            onWriteTimeout()
            if let context = self.context { AbortiveClose.close(context) }
        }
        if context.channel.isActive { arm(headReadTimeout) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(headReadTimeout)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        shedding?.remove(self)
        timer?.stop()
        timer = nil
        writeTimer?.stop()
        writeTimer = nil
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.stop()
        writeTimer?.stop()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard phase == .idle else { return context.fireChannelRead(data) }
        phase = .readingHead
        context.fireChannelRead(data)
        // Armed after the decoder ran: a head that arrived whole was handled by now (`headReceived`
        // moved the phase on), and arming a timer only to cancel it reads the clock for nothing.
        if phase == .readingHead { arm(headReadTimeout) }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            // Drained below the low-water mark: progress. With a held write still untaken the
            // time starts over, as when a held write is taken.
            if heldWriteWaits {
                writeTimer?.set(after: responseWriteTimeout)
            } else {
                writeTimer?.cancel()
            }
        } else {
            writeTimer?.set(after: responseWriteTimeout)
        }
        context.fireChannelWritabilityChanged()
    }

    /// A small response write the others are held behind was not taken at a flush (`waits`), or
    /// now was: the response-write deadline runs from the first as from the channel turning
    /// unwritable, and stops at the second unless the channel is unwritable.
    func heldResponseWrite(waits: Bool) {
        guard let context else { return }
        if waits {
            guard !heldWriteWaits else { return }
            heldWriteWaits = true
            if context.channel.isWritable { writeTimer?.set(after: responseWriteTimeout) }
        } else if heldWriteWaits {
            heldWriteWaits = false
            if context.channel.isWritable { writeTimer?.cancel() }
        }
    }

    /// A complete request head was parsed.
    func headReceived() {
        phase = .busy
        timer?.cancel()
    }

    /// The response to the last request was written at `now` and the connection stays open.
    func exchangeCompleted(now: NIODeadline) {
        phase = .idle
        timer?.set(now + idleTimeout)
    }

    private func arm(_ timeout: TimeAmount) {
        timer?.set(after: timeout)
    }
}

extension ConnectionTimeoutHandler: OverloadShedding {
    /// Expires the response-write deadline now if its wait began `waitedFor` or more before `now`
    /// and the client has not since taken what the gateway held for it (`ClientProgress`).
    func shedStalledResponses(waitedFor: TimeAmount, now: NIODeadline) -> Int {
        guard let deadline = writeTimer?.deadline, let channel = context?.channel else {
            progress = nil
            return 0
        }
        var waitBegan = deadline - responseWriteTimeout
        if let reading = ClientProgress.reading(of: channel) {
            var seen = progress ?? ClientProgress(reading, at: now)
            seen.observe(reading, at: now)
            progress = seen
            waitBegan = max(waitBegan, seen.progressedAt)
        }
        guard waitBegan <= now - waitedFor else { return 0 }
        writeTimer?.expireNow()
        return 1
    }
}
