import NIOCore

/// Closes a connection whose client stops taking response bytes: once the channel's outbound
/// buffer is over its high-water mark, the client has `limits.response_write_timeout` to drain it
/// below the low-water mark. Without this a client that never reads holds its connection and the
/// upstream connection behind it (whose reads stop with backpressure) indefinitely. Event-loop
/// confined.
final class WriteTimeoutHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let timeout: TimeAmount
    private let onTimeout: () -> Void
    private var timer: DeadlineTimer?

    init(timeout: TimeAmount, onTimeout: @escaping () -> Void) {
        self.timeout = timeout
        self.onTimeout = onTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // Strong capture: `handlerRemoved` stops the timer, which breaks the cycle (see DeadlineTimer).
        timer = DeadlineTimer(eventLoop: context.eventLoop) { [self, context] in
            onTimeout()
            context.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.stop()
        timer = nil
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            timer?.cancel()
        } else {
            timer?.set(after: timeout)
        }
        context.fireChannelWritabilityChanged()
    }
}
