import NIOCore

/// Outbound: encodes each command (`[RedisArgument]`) into RESP and hands the bytes on at flush
/// time as one buffer, so a pipelined batch leaves in a single write.
final class RedisCommandEncoder: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = [RedisArgument]
    typealias OutboundOut = ByteBuffer

    private var buffered: ByteBuffer?
    private var writePromises: [EventLoopPromise<Void>] = []

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let arguments = unwrapOutboundIn(data)
        if buffered == nil { buffered = context.channel.allocator.buffer(capacity: 512) }
        do {
            try RESPFormatter.format(arguments, into: &buffered!)
            if let promise { writePromises.append(promise) }
        } catch {
            promise?.fail(error)
        }
    }

    func flush(context: ChannelHandlerContext) {
        if let bytes = buffered {
            buffered = nil
            context.write(wrapOutboundOut(bytes), promise: combinedPromise(context))
        }
        context.flush()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        buffered = nil
        let promises = writePromises
        writePromises = []
        promises.forEach { $0.fail(ChannelError.ioOnClosedChannel) }
    }

    private func combinedPromise(_ context: ChannelHandlerContext) -> EventLoopPromise<Void>? {
        guard !writePromises.isEmpty else { return nil }
        let promises = writePromises
        writePromises = []
        if promises.count == 1 { return promises[0] }
        let combined = context.eventLoop.makePromise(of: Void.self)
        for promise in promises { combined.futureResult.cascade(to: promise) }
        return combined
    }
}
