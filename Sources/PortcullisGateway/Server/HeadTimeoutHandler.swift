import NIOCore

/// Closes connections that are slow to deliver a request head (slowloris) or sit idle between
/// requests. Sits before the HTTP decoder so it sees the first byte of each request; the request
/// path tells it when a head was parsed and when an exchange ended.
final class HeadTimeoutHandler: ChannelInboundHandler {
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
    private var phase = Phase.readingHead
    private var timer: DeadlineTimer?
    private var context: ChannelHandlerContext?

    init(headReadTimeout: TimeAmount, idleTimeout: TimeAmount) {
        self.headReadTimeout = headReadTimeout
        self.idleTimeout = idleTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // Strong capture: `handlerRemoved` stops the timer, which breaks the cycle (see DeadlineTimer).
        timer = DeadlineTimer(eventLoop: context.eventLoop) { [self] in
            guard phase != .busy else { return }
            self.context?.close(promise: nil)
        }
        if context.channel.isActive { arm(headReadTimeout) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(headReadTimeout)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.stop()
        timer = nil
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.stop()
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
