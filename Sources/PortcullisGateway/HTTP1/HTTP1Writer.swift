import NIOCore
import NIOHTTP1

/// Writes HTTP/1.1 messages as bytes for both sides of the proxy: requests to upstreams and
/// responses to clients. A head goes out as one buffer; the body as is, or in chunks.
///
/// Written here rather than using NIO's encoders, which box every part through a pipeline handler,
/// re-scan each head for its framing fields and write it string by string (each write re-checking
/// capacity and exclusivity): together a noticeable share of the CPU per request (docs/benchmarks.md).
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

    /// A request head, always as HTTP/1.1.
    mutating func request(_ head: UpstreamRequestHead, allocator: ByteBufferAllocator) -> ByteBuffer {
        framing = head.isChunked ? .chunked : .length
        let method = head.method.rawValue
        let close = head.closesConnection ? "Connection: close\r\n" : ""
        let size = method.utf8.count + 1 + head.uri.utf8.count + 11 + Self.size(of: head.fields) + close.utf8.count + 2
        return Self.write(size: size, allocator: allocator) { cursor in
            cursor.copy(method)
            cursor.copy(" ")
            cursor.copy(head.uri)
            cursor.copy(" HTTP/1.1\r\n")
            cursor.copy(head.fields)
            cursor.copy(close)
            cursor.copy("\r\n")
        }
    }

    // MARK: Responses (to clients)

    /// How a response's body reaches a client: nothing for `bodyless` responses, its length when
    /// it has one, else chunks — or, for an HTTP/1.0 client, the connection closing.
    static func responseFraming(_ head: ClientResponseHead, bodyless: Bool) -> Framing {
        let code = head.status.code
        if bodyless || code < 200 || code == 204 || code == 304 { return .none }
        if head.contentLength != nil { return .length }
        return head.version.minor == 0 ? .close : .chunked
    }

    /// A response head in `head.version`: the status line, the forwarded fields, the length, the
    /// gateway's fields, and `Transfer-Encoding: chunked` when `framing` says so. The buffer has
    /// room for `bodyRoom` more bytes, for body bytes that are to go out with the head.
    mutating func response(_ head: ClientResponseHead, framing: Framing, bodyRoom: Int = 0,
                           allocator: ByteBufferAllocator) -> ByteBuffer {
        self.framing = framing
        let code = Int(head.status.code)
        let reason = head.status.reasonPhrase
        let length = head.contentLength.map { String($0) }
        // "HTTP/1.1 200 " + reason + CRLF; codes are three digits (the parser refuses others).
        var size = 13 + reason.utf8.count + 2 + Self.size(of: head.fields) + 2
        if let requestID = head.requestID { size += Self.requestIDName.utf8CodeUnitCount + requestID.utf8.count + 2 }
        if let length { size += Self.contentLengthName.utf8CodeUnitCount + length.utf8.count + 2 }
        if framing == .chunked { size += Self.chunkedField.utf8CodeUnitCount }
        let forwarded = head.forwarded
        if let forwarded {
            head.forwardedFields.forEach { index in
                let field = forwarded.fields[index]
                size += field.name.count + field.value.count + 4
            }
        }
        return Self.write(size: size, room: bodyRoom, allocator: allocator) { cursor in
            cursor.copy(head.version.minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ")
            cursor.byte(UInt8(ascii: "0") + UInt8(code / 100 % 10))
            cursor.byte(UInt8(ascii: "0") + UInt8(code / 10 % 10))
            cursor.byte(UInt8(ascii: "0") + UInt8(code % 10))
            cursor.byte(UInt8(ascii: " "))
            cursor.copy(reason)
            cursor.copy("\r\n")
            if let forwarded {
                forwarded.withBytes { bytes in
                    head.forwardedFields.forEach { index in
                        let field = forwarded.fields[index]
                        cursor.copy(UnsafeRawBufferPointer(rebasing: bytes[field.name]))
                        cursor.copy(": ")
                        cursor.copy(UnsafeRawBufferPointer(rebasing: bytes[field.value]))
                        cursor.copy("\r\n")
                    }
                }
            }
            if let length {
                cursor.copy(Self.contentLengthName)
                cursor.copy(length)
                cursor.copy("\r\n")
            }
            if let requestID = head.requestID {
                cursor.copy(Self.requestIDName)
                cursor.copy(requestID)
                cursor.copy("\r\n")
            }
            cursor.copy(head.fields)
            if framing == .chunked { cursor.copy(Self.chunkedField) }
            cursor.copy("\r\n")
        }
    }

    // MARK: Bodies

    /// The framing before a body part in chunked mode (nil otherwise, and for an empty part, which
    /// must not be sent as a chunk: a zero-size chunk ends the body).
    func chunkPrefix(for part: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard framing == .chunked, part.readableBytes > 0 else { return nil }
        var buffer = allocator.buffer(capacity: 18)
        Self.writeChunkSize(part.readableBytes, to: &buffer)
        return buffer
    }

    /// The framing after a body part in chunked mode.
    func chunkSuffix(for part: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard framing == .chunked, part.readableBytes > 0 else { return nil }
        return allocator.buffer(staticString: "\r\n")
    }

    /// The bytes that end the body: the last chunk in chunked mode, nothing otherwise.
    func end(allocator: ByteBufferAllocator) -> ByteBuffer? {
        framing == .chunked ? allocator.buffer(staticString: Self.lastChunk) : nil
    }

    /// Appends a body part, framed as `chunkPrefix`, `chunkSuffix` would frame it, to `buffer`.
    func append(_ part: ByteBuffer, to buffer: inout ByteBuffer) {
        guard framing == .chunked else {
            buffer.writeImmutableBuffer(part)
            return
        }
        guard part.readableBytes > 0 else { return }
        Self.writeChunkSize(part.readableBytes, to: &buffer)
        buffer.writeImmutableBuffer(part)
        buffer.writeStaticString("\r\n")
    }

    /// A chunk's size line.
    private static func writeChunkSize(_ size: Int, to buffer: inout ByteBuffer) {
        buffer.writeString(String(size, radix: 16))
        buffer.writeStaticString("\r\n")
    }

    /// Appends the bytes `end` would return to `buffer`.
    func appendEnd(to buffer: inout ByteBuffer) {
        if framing == .chunked { buffer.writeStaticString(Self.lastChunk) }
    }

    // MARK: Head bytes

    private static let lastChunk: StaticString = "0\r\n\r\n"
    private static let chunkedField: StaticString = "Transfer-Encoding: chunked\r\n"
    private static let contentLengthName: StaticString = "Content-Length: "
    private static let requestIDName: StaticString = "X-Request-Id: "

    /// The bytes `fields` take as `name: value` lines.
    private static func size(of fields: some Sequence<(name: String, value: String)>) -> Int {
        fields.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
    }

    /// A head of exactly `size` bytes, written by `body` into memory reserved up front (with
    /// `room` bytes to spare).
    private static func write(size: Int, room: Int = 0, allocator: ByteBufferAllocator, _ body: (inout Cursor) -> Void) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: size + room)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { bytes in
            var cursor = Cursor(base: bytes.baseAddress!, limit: size)
            body(&cursor)
            return cursor.offset
        }
        return buffer
    }

    /// Copies into memory reserved for the bytes counted. The bound is checked on every copy: a
    /// miscount must stop the process rather than write past the reservation.
    private struct Cursor {
        let base: UnsafeMutableRawPointer
        let limit: Int
        var offset = 0

        init(base: UnsafeMutableRawPointer, limit: Int) {
            self.base = base
            self.limit = limit
        }

        mutating func copy(_ bytes: UnsafeRawBufferPointer) {
            guard let source = bytes.baseAddress else { return }
            precondition(offset + bytes.count <= limit, "head size miscounted")
            (base + offset).copyMemory(from: source, byteCount: bytes.count)
            offset += bytes.count
        }

        mutating func copy(_ string: String) {
            // Native strings (all of them on Linux) are contiguous; the loop is for any other.
            let copied: Void? = string.utf8.withContiguousStorageIfAvailable { copy(UnsafeRawBufferPointer($0)) }
            if copied == nil {
                for value in string.utf8 { byte(value) }
            }
        }

        mutating func copy(_ string: StaticString) {
            copy(UnsafeRawBufferPointer(start: string.utf8Start, count: string.utf8CodeUnitCount))
        }

        mutating func copy(_ fields: some Sequence<(name: String, value: String)>) {
            for (name, value) in fields {
                copy(name)
                copy(": ")
                copy(value)
                copy("\r\n")
            }
        }

        mutating func byte(_ value: UInt8) {
            precondition(offset < limit, "head size miscounted")
            base.storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
            offset += 1
        }
    }
}
