import NIOCore
import NIOHTTP2

/// The last handler of an HTTP/2 connection: swift-nio-http2 answers a connection error (a flood,
/// a header block over the limit, more streams than SETTINGS_MAX_CONCURRENT_STREAMS) with GOAWAY
/// and then reports it here, and an error `HTTP2FrameGuard` raises below swift-nio-http2 gets
/// its GOAWAY here (`HTTP2GuardConnectionError`); the connection is then closed (RFC 9113
/// §5.4.1), so a peer that broke the protocol holds no connection and no stream on the node.
///
/// A malformed message on one stream (`HTTP2MalformedMessage`) is reported here the same way, but
/// swift-nio-http2 has only reset that stream (RFC 9113 §8.1.1): it is counted and the connection
/// stays, so the other streams on it — other clients' calls, on an upstream connection — go on.
///
/// The close lingers, as nginx's `lingering_close` does: the GOAWAY is flushed and the output shut
/// down (FIN), what the client still sends is read and dropped, and the connection is closed when
/// the client closes its side or after `linger`, whichever comes first. Closing at once while the
/// client is still sending — a flood is — leaves unread bytes, and the kernel then answers with
/// RST, which can make the client lose the GOAWAY and with it the reason.
final class HTTP2ConnectionErrorHandler: ChannelInboundHandler {
    typealias InboundIn = Any

    private let onError: (any Error) -> Void
    private let onMalformedStream: (any Error) -> Void
    private let linger: TimeAmount?
    private var closing = false

    /// `onError` runs (to count or log it) once, before the connection is closed;
    /// `onMalformedStream` for each stream reset for a malformed message. With `linger` nil the
    /// connection is closed at once (an upstream connection: the pool must not hand it out again).
    init(linger: TimeAmount? = .seconds(1), onMalformedStream: @escaping (any Error) -> Void,
         onError: @escaping (any Error) -> Void) {
        self.linger = linger
        self.onMalformedStream = onMalformedStream
        self.onError = onError
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Later errors (frames after the GOAWAY, writes after the output is shut) change nothing.
        guard !closing else { return }
        if HTTP2MalformedMessage.isMalformed(error) { return onMalformedStream(error) }
        // A stream error swift-nio-http2 has answered by resetting that stream alone — a stream
        // the client opened after the connection's GOAWAY (a drain, a narrowed client trust)
        // is refused so — leaves the connection and its other streams going. Too many of them
        // are swift-nio-http2's to stop, as a connection error.
        if error is NIOHTTP2Errors.StreamError { return }
        // A stream the gateway opened to an upstream just as the upstream's GOAWAY arrived: that
        // stream's creation fails (its request with it); the connection's other streams go on.
        if error is NIOHTTP2Errors.CreatedStreamAfterGoaway { return }
        closing = true
        onError(error)
        if let guardError = error as? any HTTP2GuardConnectionError {
            // Last stream 0, as swift-nio-http2 answers a misbehaving peer: nothing more of it is served.
            let goAway = HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: .rootStream, errorCode: guardError.goAwayCode, opaqueData: nil))
            context.write(NIOAny(goAway), promise: nil)
        }
        // swift-nio-http2 holds its flush of the GOAWAY back to the end of the read loop.
        context.flush()
        guard let linger else { return context.close(promise: nil) }
        let halfClosed = context.eventLoop.makePromise(of: Void.self)
        context.close(mode: .output, promise: halfClosed)
        halfClosed.futureResult.assumeIsolated().whenComplete { result in
            guard case .success = result else {
                // No half-closure on this channel: close it now.
                return context.close(promise: nil)
            }
            context.eventLoop.assumeIsolated().scheduleTask(in: linger) { context.close(promise: nil) }
        }
    }
}
