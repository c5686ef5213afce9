import CHiredis
import NIOCore

/// Inbound: feeds bytes to a hiredis reader (one per channel) and emits one `RedisValue` per
/// complete reply. The reader lives exactly as long as this handler is in the pipeline.
final class RedisReplyDecoder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = RedisValue

    private var reader: UnsafeMutablePointer<redisReader>?
    /// Set while replies are being handed on, because a handler further on may close the channel
    /// (which removes this handler) in the middle of the loop; the reader is then freed afterwards.
    private var decoding = false
    private var removed = false

    func handlerAdded(context: ChannelHandlerContext) {
        reader = redisReaderCreate()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        removed = true
        if !decoding { freeReader() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let reader, !removed else { return }
        let bytes = unwrapInboundIn(data)
        let fed = bytes.withUnsafeReadableBytes { raw in
            raw.isEmpty ? REDIS_OK : redisReaderFeed(reader, raw.baseAddress!.assumingMemoryBound(to: CChar.self), raw.count)
        }
        guard fed == REDIS_OK else { return fail(context, reader) }
        decoding = true
        defer {
            decoding = false
            if removed { freeReader() }
        }
        while !removed {
            var reply: UnsafeMutableRawPointer?
            guard redisReaderGetReply(reader, &reply) == REDIS_OK else { return fail(context, reader) }
            guard let reply else { return }
            let value = RedisValue(reply: reply.assumingMemoryBound(to: redisReply.self))
            freeReplyObject(reply)
            context.fireChannelRead(wrapInboundOut(value))
        }
    }

    private func fail(_ context: ChannelHandlerContext, _ reader: UnsafeMutablePointer<redisReader>) {
        let message = withUnsafeBytes(of: reader.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        context.fireErrorCaught(RedisError.protocolError("invalid reply from server: \(message)"))
        context.close(promise: nil)
    }

    private func freeReader() {
        if let reader { redisReaderFree(reader) }
        reader = nil
    }
}

extension RedisValue {
    /// Copies a hiredis reply tree into Swift values. The caller frees the reply (once, at the top).
    init(reply pointer: UnsafePointer<redisReply>) {
        let reply = pointer.pointee
        switch reply.type {
        case REDIS_REPLY_STRING:
            self = .bulkString(Array(UnsafeRawBufferPointer(start: reply.str, count: reply.len)))
        case REDIS_REPLY_STATUS:
            self = .status(String(decoding: UnsafeRawBufferPointer(start: reply.str, count: reply.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            self = .error(String(decoding: UnsafeRawBufferPointer(start: reply.str, count: reply.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            self = .integer(Int64(reply.integer))
        case REDIS_REPLY_ARRAY:
            var elements: [RedisValue] = []
            elements.reserveCapacity(reply.elements)
            for index in 0..<reply.elements {
                // `element` is `T**`: both the vector and each slot are optional in Swift.
                if let child = reply.element?[index] {
                    elements.append(RedisValue(reply: child))
                } else {
                    elements.append(.null)
                }
            }
            self = .array(elements)
        default:  // REDIS_REPLY_NIL; the reader never produces other types in hiredis 0.14
            self = .null
        }
    }
}
