import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2

/// The gateway's end of one stream to an HTTP/2 upstream: reads the response's frames —
/// informational heads skipped, the head, DATA, trailers — for its `HTTP2UpstreamExchange`, and
/// holds reads while the client's stream cannot take more (so the upstream's window closes).
/// Confined to the event loop.
///
/// Frames rather than NIO's HTTP/2-to-HTTP/1 codec: the exchange passes fields from one HTTP/2
/// header block to another, and the codec's round trip through HTTP/1's head types cost a
/// conversion each way on every call (docs/benchmarks.md, "gRPC"). What the codec checked that
/// swift-nio-http2's header-block validation does not is checked here: a head has a `:status` of
/// three digits from 100 to 599, an informational head does not end the stream (nor come more
/// than `UpstreamResponseParser.maxInterimHeads` times), a 204 has no
/// content (swift-nio-http2 checks a 304's), and no field value has a control
/// character (whitespace at either end of one is removed); a response that fails them is
/// malformed: its stream is reset (PROTOCOL_ERROR) and counted like those swift-nio-http2 resets.
final class HTTP2UpstreamStreamHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    /// Dropped when the stream closes (the exchange holds the stream's channel until then).
    private var exchange: HTTP2UpstreamExchange?
    private var sawHead = false
    /// The head was a 204: no content may follow.
    private var noContent = false
    /// Informational heads so far; more than `UpstreamResponseParser.maxInterimHeads` (the same
    /// limit as over HTTP/1.1) make the response malformed: each costs an HPACK decode and no
    /// byte reaches the client, and without a limit an upstream sending them without end would
    /// hold the event loop until the response-header timeout.
    private var interimHeads = 0

    init(exchange: HTTP2UpstreamExchange) {
        self.exchange = exchange
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let exchange else { return }
        switch unwrapInboundIn(data) {
        case .headers(let block):
            guard let fields = Self.clientReadyFields(block.headers) else {
                return malformed("a field value with a control character", context: context)
            }
            if sawHead {
                // Trailers: swift-nio-http2 refuses a later HEADERS frame that does not end the stream.
                return end(trailers: fields)
            }
            guard let status = Self.status(fields) else {
                return malformed("a response head without a :status from 100 to 599", context: context)
            }
            if status.code < 200 {
                // An informational head is not the response, and cannot end the stream.
                if block.endStream { return malformed("an informational head that ends the stream", context: context) }
                interimHeads += 1
                if interimHeads > UpstreamResponseParser.maxInterimHeads {
                    malformed("more than \(UpstreamResponseParser.maxInterimHeads) informational heads", context: context)
                }
                return
            }
            sawHead = true
            noContent = status == .noContent
            exchange.upstreamHead(status: status, fields: fields)
            if block.endStream { end(trailers: nil) }
        case .data(let frame):
            guard sawHead, case .byteBuffer(let body) = frame.data else { return malformed("DATA before the response head", context: context) }
            if noContent, body.readableBytes > 0 { return malformed("content in a 204 response", context: context) }
            if body.readableBytes > 0 { exchange.upstreamBody(body) }
            if frame.endStream { end(trailers: nil) }
        default:
            break
        }
    }

    private func end(trailers: HPACKHeaders?) {
        exchange?.upstreamEnd(trailers: trailers)
        exchange = nil
    }

    /// A malformed response (RFC 9113 §8.1.1) that swift-nio-http2 let through: the stream is
    /// reset with PROTOCOL_ERROR, the call fails (502, gRPC `UNAVAILABLE`) and is counted.
    private func malformed(_ why: String, context: ChannelHandlerContext) {
        // The exchange first: the reset closes the stream at once, which would report it as cut.
        let exchange = self.exchange
        self.exchange = nil
        exchange?.upstreamMalformed(why)
        context.writeAndFlush(wrapOutboundOut(.rstStream(.protocolError)), promise: nil)
    }

    /// The block as the client may get it (swift-nio-http2 checks names, not values): nil when a
    /// value has a control character other than HTAB — NUL, CR and LF make the message malformed
    /// (RFC 9113 §8.2.1), the others are refused as the HTTP/1.1 parser refuses them. Whitespace
    /// at either end of a value is removed, not refused: RFC 9110 §5.5 leaves it out of the value,
    /// and gRPC servers send a `grpc-message` ending in a space, which refusing would turn into a
    /// cut call (or UNAVAILABLE, which clients retry).
    static func clientReadyFields(_ block: HPACKHeaders) -> HPACKHeaders? {
        var outerWhitespace = false
        for (_, value, _) in block {
            let utf8 = value.utf8
            if utf8.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }) { return nil }
            if let first = utf8.first, first == 0x20 || first == 0x09 { outerWhitespace = true }
            if let last = utf8.last, last == 0x20 || last == 0x09 { outerWhitespace = true }
        }
        guard outerWhitespace else { return block }
        var trimmed = HPACKHeaders()
        for (name, value, indexing) in block {
            trimmed.add(name: name, value: HeaderRewriter.trimmedWhitespace(value), indexing: indexing)
        }
        return trimmed
    }

    /// The head's `:status`, if it is three digits from 100 to 599 (RFC 9110 §15).
    static func status(_ block: HPACKHeaders) -> HTTPResponseStatus? {
        guard let value = block.first(name: ":status"), value.utf8.count == 3,
              value.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }), let code = Int(value), code >= 100, code <= 599 else {
            return nil
        }
        return HTTPResponseStatus(statusCode: code)
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
        exchange?.upstreamClosed(context.channel, refused: false)
        exchange = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A response begun — an informational head is one — shows the request was processed,
        // whatever the upstream says next.
        let refused = !sawHead && interimHeads == 0 && HTTP2StreamRefusal.refused(error, on: context.channel)
        exchange?.upstreamClosed(context.channel, refused: refused)
        exchange = nil
        context.close(promise: nil)
    }
}
