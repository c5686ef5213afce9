import NIOCore

/// Holds an HTTP/2 connection's flushes back to the end of the event loop's current round, so the
/// responses of the streams that complete in one round leave in one TLS write and one `write(2)`
/// instead of one each.
///
/// A stream's response is completed by its upstream connection's read, outside the client
/// connection's own read loop, so swift-nio-http2 flushes the connection once per response; with
/// many streams in flight that is a TLS record and a syscall per response. This handler sits
/// between the HTTP/2 handler and TLS: a flush marks the connection dirty and schedules one flush
/// as an event-loop task, which NIO runs after the I/O of the current round — a delay of at most
/// one round, never a timer. A close flushes what is pending first, so a GOAWAY written just
/// before it leaves. Netty's FlushConsolidationHandler is the model; neither NIO nor its
/// extras have one. Public for `portcullis-bench h2-floor`, which must flush as the gateway does.
public final class FlushCoalescingHandler: ChannelOutboundHandler, RemovableChannelHandler {
    public typealias OutboundIn = NIOAny
    public typealias OutboundOut = NIOAny

    private var flushPending = false

    public init() {}

    public func flush(context: ChannelHandlerContext) {
        guard !flushPending else { return }
        flushPending = true
        context.eventLoop.assumeIsolated().execute {
            self.flushIfPending(context: context)
        }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        flushIfPending(context: context)
        context.close(mode: mode, promise: promise)
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        flushIfPending(context: context)
    }

    private func flushIfPending(context: ChannelHandlerContext) {
        guard flushPending else { return }
        flushPending = false
        context.flush()
    }
}
