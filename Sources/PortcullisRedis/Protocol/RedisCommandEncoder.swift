import NIOCore

/// What goes down the pipeline to `RedisCommandEncoder`: one command, or a pipelined batch as one
/// message (so a batch does not cost a pipeline traversal per command).
enum RedisOutbound {
    case command([RedisArgument])
    case batch([[RedisArgument]])
}

/// Outbound: encodes commands into RESP and hands the bytes on at flush time as one buffer, so a
/// pipelined batch leaves in a single write.
final class RedisCommandEncoder: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = RedisOutbound
    typealias OutboundOut = ByteBuffer

    private var buffered: ByteBuffer?
    private var writePromises: [EventLoopPromise<Void>] = []

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if buffered == nil { buffered = context.channel.allocator.buffer(capacity: 512) }
        do {
            switch unwrapOutboundIn(data) {
            case .command(let arguments):
                try RESPFormatter.format(arguments, into: &buffered!)
            case .batch(let commands):
                for arguments in commands { try RESPFormatter.format(arguments, into: &buffered!) }
            }
            if let promise { writePromises.append(promise) }
        } catch {
            // Commands are already waiting for replies that will now never be sent; only closing
            // the connection keeps later replies from being matched to the wrong commands.
            promise?.fail(error)
            context.fireErrorCaught(error)
            context.close(promise: nil)
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
