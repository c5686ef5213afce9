import NIOCore
import NIOHTTP1

/// The gateway's end of one stream to an HTTP/2 upstream, behind swift-nio-http2's client codec:
/// hands the response to its `HTTP2UpstreamExchange` and holds reads while the client's stream
/// cannot take more (so the upstream's window closes). Confined to the event loop.
final class HTTP2UpstreamStreamHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    /// Dropped when the stream closes (the exchange holds the stream's channel until then).
    private var exchange: HTTP2UpstreamExchange?

    init(exchange: HTTP2UpstreamExchange) {
        self.exchange = exchange
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): exchange?.upstreamHead(head)
        case .body(let body): exchange?.upstreamBody(body)
        case .end(let trailers):
            exchange?.upstreamEnd(trailers: trailers)
            exchange = nil
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        exchange?.upstreamReadComplete()
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if let exchange, !exchange.clientIsWritable { return }
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        exchange?.upstreamWritabilityChanged(isWritable: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        exchange?.upstreamClosed()
        exchange = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        exchange?.upstreamClosed()
        exchange = nil
        context.close(promise: nil)
    }
}
