import NIOCore
import NIOHTTP2

/// The front of an HTTP/2 stream's pipeline, on client and upstream connections alike (on
/// upstream streams after `HTTP2UpstreamResetCounter`, which passes every frame on and so counts
/// this one's reset): tells the connection's `HTTP2FrameQueues` each frame swift-nio-http2
/// delivers to the stream (what the queue lost), and resets the stream with ENHANCE_YOUR_CALM
/// when the connection's queues are over their limit and this stream holds the most — its queued
/// frames go with it, and what the stream's handlers see is a closed stream. The queues hold it
/// until the stream closes. Confined to the connection's event loop.
final class HTTP2FrameQueueMeter: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = HTTP2Frame.FramePayload
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    private let queues: HTTP2FrameQueues
    private let onReset: () -> Void
    private var streamID: UInt32?
    private var context: ChannelHandlerContext?

    /// - Parameter onReset: called when the stream is reset for the connection's queues.
    init(queues: HTTP2FrameQueues, onReset: @escaping () -> Void) {
        self.queues = queues
        self.onReset = onReset
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        attach(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if let streamID { queues.closed(streamID) }
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if let streamID {
            switch unwrapInboundIn(data) {
            case .data, .headers, .windowUpdate: queues.delivered(on: streamID)
            default: break
            }
        }
        context.fireChannelRead(data)
    }

    func flush(context: ChannelHandlerContext) {
        context.flush()
        // A stream the gateway opens gets its ID when its first frame is flushed.
        if streamID == nil { attach(context) }
    }

    private func attach(_ context: ChannelHandlerContext) {
        guard let id = try? context.channel.syncOptions?.getOption(HTTP2StreamChannelOptions.streamID) else { return }
        let streamID = UInt32(Int(id))
        self.streamID = streamID
        queues.attach(streamID, meter: self)
    }

    /// Resets the stream with ENHANCE_YOUR_CALM (`HTTP2FrameQueues.shed`).
    func reset() {
        onReset()
        context?.writeAndFlush(wrapOutboundOut(.rstStream(.enhanceYourCalm)), promise: nil)
    }
}
