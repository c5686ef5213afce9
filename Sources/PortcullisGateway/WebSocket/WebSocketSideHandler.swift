import NIOCore
import NIOWebSocket

/// The last handler of either connection of a WebSocket (after NIO's frame encoder and decoder):
/// hands frames and connection events to the `WebSocketRelay`, and holds reads back while the
/// other side cannot take more bytes.
final class WebSocketSideHandler: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let side: WebSocketRelay.Side
    private var relay: WebSocketRelay?

    init(side: WebSocketRelay.Side, relay: WebSocketRelay) {
        self.side = side
        self.relay = relay
    }

    func handlerAdded(context: ChannelHandlerContext) {
        relay?.attach(side, context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // The relay holds this side's context: drop the link both ways.
        relay?.inactive(side)
        relay = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        relay?.received(unwrapInboundIn(data), from: side)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        relay?.readComplete(from: side)
    }

    func channelInactive(context: ChannelHandlerContext) {
        relay?.inactive(side)
        relay = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        relay?.failed(side, error: error)
    }

    /// SIGTERM drain: the WebSocket ends with 1001 rather than holding the drain to its deadline.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            relay?.close(code: .goingAway, reason: "server shutting down", end: .draining)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        relay?.writabilityChanged(side)
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if let relay, !relay.mayRead(side) {
            relay.holdRead(side)
            return
        }
        context.read()
    }
}
