import NIOCore
import NIOHTTP2

/// Ends a stream whose response is complete while the client is still sending its request: a
/// RST_STREAM with NO_ERROR, which asks the client to stop sending "without error" (RFC 9113
/// §8.1), where closing the stream channel would send CANCEL — which a gRPC client may report as
/// a CANCELLED call although its status OK has arrived.
///
/// `HTTP2StreamHandler` adds it at the front of the stream's pipeline (before NIO's
/// HTTP/2-to-HTTP/1 codec, where a stream's writes are frame payloads) once the response's end is
/// written, and asks for the reset with the outbound event `HTTP2EarlyResponseReset.request`:
/// streams that need it are few, so the others do not carry it. swift-nio-http2 closes the
/// stream once the reset is written. Confined to the stream's event loop.
final class HTTP2EarlyResponseReset: ChannelOutboundHandler {
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    /// The outbound event that asks for the reset.
    struct Request: Sendable {}
    static let request = Request()

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard event is Request else { return context.triggerUserOutboundEvent(event, promise: promise) }
        context.writeAndFlush(wrapOutboundOut(.rstStream(.noError)), promise: promise)
    }
}
