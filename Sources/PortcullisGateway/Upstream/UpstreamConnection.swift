import NIOCore
import NIOHTTP1
import PortcullisConfig

/// A connection to one upstream target, owned by one event loop's pool.
final class UpstreamConnection {
    let channel: any Channel
    let handler: UpstreamHandler
    let context: ChannelHandlerContext
    let target: UpstreamTarget
    let poolKey: UpstreamPool.Key
    /// When it was last returned to the pool.
    var idleSince: NIODeadline = .now()
    /// Exchanges completed on it; 0 means fresh.
    var exchanges = 0

    init(channel: any Channel, handler: UpstreamHandler, context: ChannelHandlerContext, target: UpstreamTarget, poolKey: UpstreamPool.Key) {
        self.channel = channel
        self.handler = handler
        self.context = context
        self.target = target
        self.poolKey = poolKey
    }

    var isUsable: Bool { channel.isActive && !handler.isClosed }

    /// Whether the request may be fed more bytes (the channel's writability, and the body bytes
    /// held while the upstream is behind).
    var isWritable: Bool { handler.isWritable }

    @discardableResult
    func write(_ part: UpstreamRequestPart, promise: EventLoopPromise<Void>? = nil, now: NIODeadline? = nil) -> Bool {
        handler.write(part, promise: promise, context: context, now: now)
    }

    func flush() {
        context.flush()
    }

    func resumeReading() {
        handler.resumeReading(context: context)
    }

    func close() {
        handler.endExchange()
        channel.close(promise: nil)
    }

    /// Closes with a reset (`AbortiveClose`): for a connection whose exchange is complete.
    func closeAbortively() {
        handler.endExchange()
        AbortiveClose.close(context)
    }
}
