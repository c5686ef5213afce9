import NIOCore
import NIOHTTP1

/// Writes requests to an upstream connection as HTTP/1.1 bytes: the head in one buffer, the body
/// as is (`Content-Length`) or in chunks (`Transfer-Encoding: chunked`, which the rewriter sets
/// when the client sent chunks). Heads come from `HeaderRewriter`, whose fields are valid by
/// construction, so nothing is re-validated here (see `UpstreamResponseParser` for why this is
/// not NIO's encoder).
struct UpstreamRequestWriter {
    /// Whether the body of the request being written goes in chunks.
    private(set) var chunked = false

    /// The head's bytes; remembers the body framing for `body` and `end`.
    mutating func head(_ head: HTTPRequestHead, allocator: ByteBufferAllocator) -> ByteBuffer {
        var size = head.method.rawValue.utf8.count + head.uri.utf8.count + 16
        chunked = false
        for (name, value) in head.headers {
            size += name.utf8.count + value.utf8.count + 4
            if name.utf8.count == 17, HeaderNameSet.matches(name, "transfer-encoding") {
                chunked = true
            }
        }
        var buffer = allocator.buffer(capacity: size)
        buffer.writeString(head.method.rawValue)
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(head.uri)
        buffer.writeStaticString(" HTTP/1.1\r\n")
        for (name, value) in head.headers {
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("\r\n")
        return buffer
    }

    /// The framing before a body part in chunked mode (nil otherwise, and for an empty part, which
    /// must not be sent as a chunk: a zero-size chunk ends the body).
    func chunkPrefix(for part: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard chunked, part.readableBytes > 0 else { return nil }
        var buffer = allocator.buffer(capacity: 18)
        buffer.writeString(String(part.readableBytes, radix: 16))
        buffer.writeStaticString("\r\n")
        return buffer
    }

    /// The framing after a body part in chunked mode.
    func chunkSuffix(for part: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard chunked, part.readableBytes > 0 else { return nil }
        return allocator.buffer(staticString: "\r\n")
    }

    /// The bytes that end the body: the last chunk in chunked mode, nothing otherwise.
    func end(allocator: ByteBufferAllocator) -> ByteBuffer? {
        chunked ? allocator.buffer(staticString: "0\r\n\r\n") : nil
    }
}
