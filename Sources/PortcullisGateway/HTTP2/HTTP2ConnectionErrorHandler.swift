import NIOCore

/// The last handler of an HTTP/2 connection: swift-nio-http2 answers a connection error (a flood,
/// a header block over the limit, more streams than SETTINGS_MAX_CONCURRENT_STREAMS) with GOAWAY
/// and then reports it here; the connection is then closed (RFC 9113 §5.4.1), so a client that
/// broke the protocol holds no connection and no stream on the node.
final class HTTP2ConnectionErrorHandler: ChannelInboundHandler {
    typealias InboundIn = Any

    private let onError: () -> Void

    /// `onError` runs (to count it) before the connection is closed.
    init(onError: @escaping () -> Void) {
        self.onError = onError
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        onError()
        context.close(promise: nil)
    }
}
