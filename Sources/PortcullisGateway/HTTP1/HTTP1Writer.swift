import NIOCore
import NIOHTTP1

/// Writes HTTP/1.1 messages as bytes for both sides of the proxy: requests to upstreams and
/// responses to clients. A head goes out as one buffer; the body as is, or in chunks.
///
/// Written here rather than using NIO's encoders, which box every part through a pipeline handler,
/// re-scan each head for its framing fields and write it string by string (each write re-checking
/// capacity and exclusivity): together about 8% of the CPU per request (docs/benchmarks.md).
/// Nothing is re-validated: every head comes from `HeaderRewriter` or `ErrorResponse`, whose
/// fields are valid by construction (see `HeaderRewriter`).
struct HTTP1Writer {
    /// How the body of the message being written is delimited.
    enum Framing: Equatable {
        /// No body can follow (a response to HEAD; 1xx, 204, 304).
        case none
        /// `Content-Length`, written as is.
        case length
        /// `Transfer-Encoding: chunked`: every part is framed as a chunk.
        case chunked
        /// The body ends when the connection closes (an HTTP/1.0 client without a length).
        case close
    }

    private(set) var framing = Framing.length

    // MARK: Requests (to upstreams)

    /// A request head, always as HTTP/1.1. Its body is chunked when the head carries
    /// `Transfer-Encoding` (which the rewriter sets only to `chunked`).
    mutating func request(_ head: HTTPRequestHead, allocator: ByteBufferAllocator) -> ByteBuffer {
        framing = .length
        for (name, _) in head.headers where name.utf8.count == 17 && HeaderNameSet.matches(name, "transfer-encoding") {
            framing = .chunked
        }
        let method = head.method.rawValue
        let startLength = method.utf8.count + 1 + head.uri.utf8.count + 11
        return Self.head(startLength: startLength, headers: head.headers, chunked: false, allocator: allocator) { cursor in
            cursor.copy(method)
            cursor.copy(" ")
            cursor.copy(head.uri)
            cursor.copy(" HTTP/1.1\r\n")
        }
    }

    // MARK: Responses (to clients)

    /// How a response's body reaches a client: nothing for `bodyless` responses, its length when
    /// the head has one, else chunks — or, for an HTTP/1.0 client, the connection closing.
    static func responseFraming(_ head: HTTPResponseHead, bodyless: Bool) -> Framing {
        if bodyless || head.status.code < 200 || head.status.code == 204 || head.status.code == 304 { return .none }
        for (name, _) in head.headers where name.utf8.count == 14 && HeaderNameSet.matches(name, "content-length") {
            return .length
        }
        return head.version.minor == 0 ? .close : .chunked
    }

    /// A response head in `head.version`, adding `Transfer-Encoding: chunked` when `framing` says so.
    mutating func response(_ head: HTTPResponseHead, framing: Framing, allocator: ByteBufferAllocator) -> ByteBuffer {
        self.framing = framing
        let code = Int(head.status.code)
        let reason = head.status.reasonPhrase
        // "HTTP/1.1 200 " + reason + CRLF; codes are three digits (the parser refuses others).
        let startLength = 13 + reason.utf8.count + 2
        return Self.head(startLength: startLength, headers: head.headers, chunked: framing == .chunked, allocator: allocator) { cursor in
            cursor.copy(head.version.minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ")
            cursor.byte(UInt8(ascii: "0") + UInt8(code / 100 % 10))
            cursor.byte(UInt8(ascii: "0") + UInt8(code / 10 % 10))
            cursor.byte(UInt8(ascii: "0") + UInt8(code % 10))
            cursor.byte(UInt8(ascii: " "))
            cursor.copy(reason)
            cursor.copy("\r\n")
        }
    }

    // MARK: Bodies

    /// The framing before a body part in chunked mode (nil otherwise, and for an empty part, which
    /// must not be sent as a chunk: a zero-size chunk ends the body).
    func chunkPrefix(for part: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard framing == .chunked, part.readableBytes > 0 else { return nil }
        var buffer = allocator.buffer(capacity: 18)
        buffer.writeString(String(part.readableBytes, radix: 16))
        buffer.writeStaticString("\r\n")
        return buffer
    }

    /// The framing after a body part in chunked mode.
    func chunkSuffix(for part: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard framing == .chunked, part.readableBytes > 0 else { return nil }
        return allocator.buffer(staticString: "\r\n")
    }

    /// The bytes that end the body: the last chunk in chunked mode, nothing otherwise.
    func end(allocator: ByteBufferAllocator) -> ByteBuffer? {
        framing == .chunked ? allocator.buffer(staticString: "0\r\n\r\n") : nil
    }

    // MARK: Head bytes

    /// A start line, the fields and the empty line, in one buffer sized up front.
    private static func head(startLength: Int, headers: HTTPHeaders, chunked: Bool, allocator: ByteBufferAllocator,
                             startLine: (inout Cursor) -> Void) -> ByteBuffer {
        var size = startLength + 2
        for (name, value) in headers { size += name.utf8.count + value.utf8.count + 4 }
        if chunked { size += Self.chunkedField.utf8CodeUnitCount }
        var buffer = allocator.buffer(capacity: size)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { bytes in
            var cursor = Cursor(base: bytes.baseAddress!)
            startLine(&cursor)
            for (name, value) in headers {
                cursor.copy(name)
                cursor.copy(": ")
                cursor.copy(value)
                cursor.copy("\r\n")
            }
            if chunked { cursor.copy(Self.chunkedField) }
            cursor.copy("\r\n")
            precondition(cursor.offset == size, "head size miscounted")
            return cursor.offset
        }
        return buffer
    }

    private static let chunkedField: StaticString = "Transfer-Encoding: chunked\r\n"

    /// Copies into memory reserved for exactly the bytes counted.
    private struct Cursor {
        let base: UnsafeMutableRawPointer
        var offset = 0

        init(base: UnsafeMutableRawPointer) { self.base = base }

        mutating func copy(_ string: String) {
            var string = string
            string.withUTF8 { bytes in
                guard let source = bytes.baseAddress else { return }
                (base + offset).copyMemory(from: source, byteCount: bytes.count)
                offset += bytes.count
            }
        }

        mutating func copy(_ string: StaticString) {
            (base + offset).copyMemory(from: string.utf8Start, byteCount: string.utf8CodeUnitCount)
            offset += string.utf8CodeUnitCount
        }

        mutating func byte(_ value: UInt8) {
            base.storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
            offset += 1
        }
    }
}
