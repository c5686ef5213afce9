import NIOCore

/// First in the pipeline of a listener with `proxy_protocol: true`, before TLS: reads the PROXY
/// protocol header (`ProxyProtocolHeader`; SwiftNIO has no handler for it, so this one is
/// hand-written) and hands the client's address to `onHeader`, which builds the rest of the
/// pipeline; then leaves, passing the bytes after the header on. A connection that sends
/// anything else, or no complete header within `timeout`, is closed without a byte written
/// and reported to `onRefused` (counted in `portcullis_proxy_protocol_refused_total`).
final class ProxyProtocolHandler: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    enum Refusal: String {
        case invalid, timeout
    }

    private let timeout: TimeAmount
    /// Called once, with the header's source address (nil for LOCAL/UNKNOWN: the TCP peer).
    private let onHeader: (any Channel, String?) throws -> Void
    private let onRefused: (Refusal) -> Void
    private var timer: Scheduled<Void>?
    private var done = false

    init(timeout: TimeAmount, onHeader: @escaping (any Channel, String?) throws -> Void, onRefused: @escaping (Refusal) -> Void) {
        self.timeout = timeout
        self.onHeader = onHeader
        self.onRefused = onRefused
    }

    func decoderAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = loopBound.value
            handler.refuse(.timeout, context: context)
        }
    }

    func decoderRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
    }

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard !done else { return .needMoreData }
        switch ProxyProtocolHeader.parse(buffer.readableBytesView) {
        case .incomplete:
            return .needMoreData
        case .invalid:
            buffer.moveReaderIndex(to: buffer.writerIndex)
            refuse(.invalid, context: context)
            return .needMoreData
        case .header(let header):
            done = true
            timer?.cancel()
            buffer.moveReaderIndex(forwardBy: header.length)
            try onHeader(context.channel, header.source?.address)
            // The bytes after the header reach the new handlers in `decodeLast`, which the
            // removal calls.
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return .needMoreData
        }
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        if done, buffer.readableBytes > 0 {
            context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: buffer.readableBytes)!))
        }
        return .needMoreData
    }

    private func refuse(_ reason: Refusal, context: ChannelHandlerContext) {
        guard !done else { return }
        done = true
        timer?.cancel()
        onRefused(reason)
        context.close(promise: nil)
    }
}
