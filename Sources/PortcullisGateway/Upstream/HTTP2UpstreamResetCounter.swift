import NIOCore
import NIOHTTP2

/// Sits first in each upstream stream's pipeline and tells its connection when the gateway resets
/// the stream (`HTTP2UpstreamResetBudget`): an RST_STREAM it writes, or a close before both sides
/// ended, on which swift-nio-http2 sends RST_STREAM CANCEL. A stream the upstream reset, or that
/// ended both ways, sends none. Confined to the event loop.
final class HTTP2UpstreamResetCounter: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundIn = HTTP2Frame.FramePayload

    private let onReset: () -> Void
    private var requestEnded = false
    private var responseEnded = false
    /// The stream is over: reset by either side, or closed.
    private var over = false

    init(onReset: @escaping () -> Void) {
        self.onReset = onReset
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .headers(let block) where block.endStream: responseEnded = true
        case .data(let frame) where frame.endStream: responseEnded = true
        case .rstStream: over = true
        default: break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .headers(let block) where block.endStream: requestEnded = true
        case .data(let frame) where frame.endStream: requestEnded = true
        case .rstStream:
            if !over { onReset() }
            over = true
        default: break
        }
        context.write(data, promise: promise)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if !over, !(requestEnded && responseEnded) { onReset() }
        over = true
        context.close(mode: mode, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        over = true
        context.fireChannelInactive()
    }
}
