import NIOCore
import NIOHTTP1

/// An HTTP/2 stream carrying a WebSocket (RFC 8441) as the relay's client side, between NIO's
/// HTTP/2-to-HTTP/1 codec and `WebSocketSideHandler`: the WebSocket frames in the stream's DATA
/// are the same bytes a TCP connection would carry, so the relay reads and writes bytes here as
/// on HTTP/1.1 — the bytes of each DATA frame in, the relay's bytes out as DATA.
///
/// The stream's end stands for the TCP connection's (RFC 8441 §5.1): the client's END_STREAM
/// closes the client side as a closed connection would, and when the relay closes this side the
/// gateway ends the stream with END_STREAM first (a client that has not ended its half by then
/// gets RST_STREAM CANCEL as the channel closes; one whose window holds the END_STREAM back gets
/// the close after `WebSocketRelay.closeGrace`).
final class WebSocketStreamBridge: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = HTTPServerResponsePart

    /// What the client sent during the upstream handshake, and whether its half ended then.
    private var early: [ByteBuffer]
    private var clientEnded: Bool
    private var streamEnded = false
    private var removed = false

    init(early: [ByteBuffer], clientEnded: Bool) {
        self.early = early
        self.clientEnded = clientEnded
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // On the next loop turn: the relay's upstream side is attached after this stream's
        // (`WebSocketUpgrade`), and the early bytes must find it. Reads were held during the
        // handshake; they start again from here.
        context.eventLoop.assumeIsolated().execute { [self] in
            guard !removed else { return }
            let early = self.early
            self.early = []
            for buffer in early { context.fireChannelRead(wrapInboundOut(buffer)) }
            if !early.isEmpty { context.fireChannelReadComplete() }
            if clientEnded {
                close(context: context, mode: .all, promise: nil)
            } else {
                context.channel.read()
            }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        removed = true
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .body(let buffer):
            context.fireChannelRead(wrapInboundOut(buffer))
        case .end:
            clientEnded = true
            close(context: context, mode: .all, promise: nil)
        case .head:
            break  // a stream has one head, read by HTTP2StreamHandler
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(wrapOutboundOut(.body(.byteBuffer(unwrapOutboundIn(data)))), promise: promise)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all, !streamEnded, context.channel.isActive else {
            return context.close(mode: mode, promise: promise)
        }
        streamEnded = true
        // The END_STREAM waits behind DATA the client's window holds back; a client that never
        // opens its window gets the close after `closeGrace` all the same.
        var closed = false
        let closeOnce = {
            guard !closed else { return }
            closed = true
            context.close(mode: mode, promise: promise)
        }
        let deadline = context.eventLoop.assumeIsolated().scheduleTask(in: WebSocketRelay.closeGrace) { closeOnce() }
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            deadline.cancel()
            closeOnce()
        }
    }
}
