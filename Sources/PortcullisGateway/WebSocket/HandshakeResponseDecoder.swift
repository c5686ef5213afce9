import NIOCore
import NIOHTTP1

/// NIO's HTTP/1.1 response decoder for the upstream's answer to a WebSocket handshake, told of
/// the one request it answers (a GET) up front instead of watching the connection's writes.
///
/// `HTTPResponseDecoder` watches writes to match responses to requests, which puts its
/// `ByteToMessageHandler` on the outbound path too, and that handler leaves the pipeline one
/// event-loop task after it is asked to (it forwards the bytes that came after the 101 first).
/// The relay's first writes to the upstream — a close frame for a token that ended during the
/// handshake, the frames an HTTP/2 client sent before its 200 — could reach it in that task's
/// gap, and NIO would stop the process on the unexpected type. This decoder is inbound only, so
/// writes pass it whenever they come. Confined to the connection's event loop.
struct HandshakeResponseDecoder: ByteToMessageDecoder {
    typealias InboundOut = HTTPClientResponsePart

    private let decoder: HTTPResponseDecoder

    /// - Parameter request: the handshake's request head (its method decides whether the
    ///   answer may carry a body).
    init(request: HTTPRequestHead) {
        // Informational heads forwarded, so that `HandshakeHandler` can count them.
        decoder = HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes, informationalResponseStrategy: .forward)
        decoder.write(data: .head(request))
    }

    func decoderAdded(context: ChannelHandlerContext) {
        decoder.decoderAdded(context: context)
    }

    func decoderRemoved(context: ChannelHandlerContext) {
        decoder.decoderRemoved(context: context)
    }

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        try decoder.decode(context: context, buffer: &buffer)
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decoder.decodeLast(context: context, buffer: &buffer, seenEOF: seenEOF)
    }
}
