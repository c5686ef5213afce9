import NIOCore
import NIOHTTP1

/// Told to the request path when a client sends its request body too slowly: it answers 408 if
/// it still can, and closes the connection.
struct RequestBodyTooSlow: Sendable {}

/// Enforces a minimum request-body data rate (`limits.request_body_min_rate` after
/// `limits.request_body_grace`), so that a client trickling a body cannot hold a connection and
/// an upstream connection for as long as it likes. Only time in which the gateway was waiting
/// for the client counts — a read was asked for and no byte came. While the request path holds
/// reads back (the upstream is slow to take the body, or not connected yet) the clock stops, so
/// backpressure is never blamed on the client. Sits between the HTTP decoder and the request
/// path; event-loop confined.
final class RequestBodyRateHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Bytes per second.
    private let minimumRate: Int
    private let grace: TimeAmount
    private var inBody = false
    private var received = 0
    /// Time spent waiting for this body's bytes, up to the last time some arrived.
    private var waited = TimeAmount.zero
    private var waitingSince: NIODeadline?
    private var timer: DeadlineTimer?
    private var context: ChannelHandlerContext?

    init(minimumRate: Int, grace: TimeAmount) {
        self.minimumRate = minimumRate
        self.grace = grace
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // Strong capture: `handlerRemoved` stops the timer, which breaks the cycle (see DeadlineTimer).
        timer = DeadlineTimer(eventLoop: context.eventLoop) { [self] in expired() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.stop()
        timer = nil
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            inBody = true
            received = 0
            waited = .zero
            stopWaiting(now: nil)
        case .body(let buffer):
            received += buffer.readableBytes
            stopWaiting(now: .now())
        case .end:
            inBody = false
            stopWaiting(now: nil)
        }
        context.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        if inBody, waitingSince == nil {
            let now = NIODeadline.now()
            waitingSince = now
            timer?.set(now + allowance - waited)
        }
        context.read()
    }

    /// How long the body may have taken so far: the grace period plus the time its bytes take at
    /// the minimum rate.
    private var allowance: TimeAmount {
        grace + .nanoseconds(Int64(received) * 1_000_000_000 / Int64(minimumRate))
    }

    private func stopWaiting(now: NIODeadline?) {
        if let waitingSince, let now { waited = waited + (now - waitingSince) }
        waitingSince = nil
        timer?.cancel()
    }

    private func expired() {
        guard inBody, let waitingSince, let context else { return }
        guard waited + (.now() - waitingSince) >= allowance else {
            timer?.set(waitingSince + allowance - waited)
            return
        }
        inBody = false
        self.waitingSince = nil
        context.fireUserInboundEventTriggered(RequestBodyTooSlow())
    }
}
