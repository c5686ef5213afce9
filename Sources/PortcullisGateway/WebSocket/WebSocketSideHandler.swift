import NIOCore

/// The last handler of either connection of a WebSocket (in place of the HTTP/1.1 handlers once
/// the handshake is done): hands the bytes read and the connection's events to the
/// `WebSocketRelay`, and holds reads back while the other side cannot take more bytes.
final class WebSocketSideHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

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

    /// A read or write failed (a reset, a TLS error): the connection closes, and the relay hears
    /// of it as `channelInactive`.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
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
