import NIOCore
import NIOHTTP1

/// Reads HTTP/1.x responses from an upstream connection (RFC 9112): the head, then the body
/// framed by `Content-Length`, chunked coding or the connection closing.
///
/// Written here rather than using NIO's client codec because the upstream side is the hot half of
/// the proxy: NIO's decoder boxes every part through the pipeline and observes every outbound
/// write to learn the request method, and its encoder re-validates each header (figures:
/// docs/benchmarks.md). The client side keeps NIO's llhttp decoder, where the
/// strictness against smuggling matters most. This parser is strict too: anything it does not
/// understand fails the exchange with a 502 and the connection is not reused.
struct UpstreamResponseParser {
    enum Event {
        case head(UpstreamResponseHead)
        case body(ByteBuffer)
        /// The response is complete; `reusable` tells whether the connection may carry another.
        case end(reusable: Bool)
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Limits on what an upstream may send outside the body.
    static let maxHeadBytes = 64 * 1024
    static let maxLineBytes = 4 * 1024
    /// Interim (1xx) heads allowed before a response's final head. Each costs a parse and no
    /// byte reaches the client: without a limit, an upstream sending them without end would hold
    /// the event loop (and every connection on it) until the response-header timeout. A server
    /// sends one or two (100 Continue, 103 Early Hints).
    static let maxInterimHeads = 8
    /// Bytes of chunked framing beyond what the data carried allows (`excessChunkFraming`).
    static let maxExcessChunkFraming = 16 * 1024

    private enum State {
        /// No exchange: any byte is out of step.
        case idle
        case head
        case fixed(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers(bytes: Int)
        case untilClose
    }

    private var state = State.idle
    private var requestWasHEAD = false
    /// Interim heads of the current response so far.
    private var interimHeads = 0
    /// Chunked framing (size lines with their extensions, CRLFs) read beyond an allowance per
    /// chunk and twice its data, never below 0: 1-byte chunks each carrying kilobytes of
    /// extensions cost a parse per line while the client gets a byte, enough to hold a core.
    /// Past `maxExcessChunkFraming` the response fails.
    private var excessChunkFraming = 0
    private var keepAlive = true
    /// The response is complete; `.end` is the next event.
    private var pendingEnd = false
    /// Bytes of an incomplete head already searched for its end (a head trickling in is not
    /// rescanned from its start on every read).
    private var headScanned = 0
    /// The same for an incomplete chunk-size or trailer line, so that a line trickled a byte at
    /// a time is not searched from its start on every read.
    private var lineScanned = 0
    /// Received bytes not yet consumed; nil when everything was.
    private var buffer: ByteBuffer?
    /// The last head's field list, whose storage the next head reuses: the head is written to the
    /// client and dropped before the next one arrives, so the array is unique again by then and
    /// a response allocates no field list of its own.
    private var fields: [UpstreamResponseHead.Field] = []

    /// Starts reading the response to a request with `method`.
    mutating func expectResponse(to method: HTTPMethod) {
        state = .head
        requestWasHEAD = method == .HEAD
        interimHeads = 0
        excessChunkFraming = 0
        keepAlive = true
        pendingEnd = false
        headScanned = 0
        lineScanned = 0
        buffer = nil
    }

    /// Whether a response is in progress.
    var isExpectingBytes: Bool {
        if case .idle = state { return false }
        return true
    }

    /// Adds received bytes; read the events with `next()`. (A pull interface, so that the handler
    /// acting on an event — which may close the connection — never runs inside a parser call.)
    mutating func append(_ input: ByteBuffer) {
        if buffer == nil {
            buffer = input
        } else {
            var input = input
            buffer!.writeBuffer(&input)
        }
    }

    /// The next event, or nil when more bytes are needed. Throws on a malformed response; the
    /// connection must then be closed.
    mutating func next() throws -> Event? {
        while true {
            if pendingEnd { return end() }
            guard var input = buffer, input.readableBytes > 0 else {
                buffer = nil
                return nil
            }
            buffer = nil
            let result = try step(&input)
            if input.readableBytes > 0 { buffer = input }
            switch result {
            case .event(let event): return event
            case .progress: continue
            case .needMore: return nil
            }
        }
    }

    private enum Step {
        case event(Event)
        case progress
        case needMore
    }

    /// One step of the state machine over `input`, consuming what it used.
    private mutating func step(_ input: inout ByteBuffer) throws -> Step {
        switch state {
        case .idle:
            throw Failure("bytes outside a response")
        case .head:
            guard let headLength = Self.headLength(input, from: headScanned) else {
                guard input.readableBytes <= Self.maxHeadBytes else { throw Failure("response head larger than \(Self.maxHeadBytes) bytes") }
                // A head with a line ending in a bare LF would never end in CRLF CRLF: refused now
                // (502), not after `response_header_timeout` (504). Only new bytes are looked at.
                guard !Self.hasBareLineFeed(input, from: headScanned) else { throw Failure("line not terminated by CRLF") }
                headScanned = input.readableBytes
                return .needMore
            }
            headScanned = 0
            guard headLength <= Self.maxHeadBytes else { throw Failure("response head larger than \(Self.maxHeadBytes) bytes") }
            guard let head = try parseHead(input.readSlice(length: headLength)!) else {
                return .progress  // informational; the real head follows
            }
            return .event(.head(head))
        case .fixed(let remaining):
            let slice = input.readSlice(length: min(remaining, input.readableBytes))!
            if remaining == slice.readableBytes {
                pendingEnd = true
            } else {
                state = .fixed(remaining: remaining - slice.readableBytes)
            }
            return .event(.body(slice))
        case .chunkSize:
            guard let line = try Self.readLine(&input, limit: Self.maxLineBytes, scanned: &lineScanned) else { return .needMore }
            let size = try Self.chunkSize(line)
            // The line, its CRLF and the CRLF after the data, against 16 bytes and twice the data.
            excessChunkFraming = max(0, excessChunkFraming + line.readableBytes + 4 - 16 - 2 * size)
            guard excessChunkFraming <= Self.maxExcessChunkFraming else { throw Failure("chunked framing far larger than the data it carries") }
            state = size == 0 ? .trailers(bytes: 0) : .chunkData(remaining: size)
            return .progress
        case .chunkData(let remaining):
            let slice = input.readSlice(length: min(remaining, input.readableBytes))!
            state = remaining == slice.readableBytes ? .chunkDataEnd : .chunkData(remaining: remaining - slice.readableBytes)
            return .event(.body(slice))
        case .chunkDataEnd:
            guard input.readableBytes >= 2 else { return .needMore }
            guard input.readInteger(as: UInt16.self) == 0x0D0A else { throw Failure("chunk data not followed by CRLF") }
            state = .chunkSize
            return .progress
        case .trailers(let bytes):
            // Trailer fields are read past, not forwarded (NIO's encoder on the client side
            // would not send them either).
            guard let line = try Self.readLine(&input, limit: Self.maxHeadBytes, scanned: &lineScanned) else { return .needMore }
            if line.readableBytes == 0 {
                pendingEnd = true
            } else {
                let total = bytes + line.readableBytes
                guard total <= Self.maxHeadBytes else { throw Failure("trailers larger than \(Self.maxHeadBytes) bytes") }
                state = .trailers(bytes: total)
            }
            return .progress
        case .untilClose:
            return .event(.body(input.readSlice(length: input.readableBytes)!))
        }
    }

    /// The connection closed: ends a body delimited by the close; anything else was cut short.
    mutating func inputClosed() throws -> Event? {
        switch state {
        case .idle:
            return nil
        case .untilClose:
            state = .idle
            buffer = nil
            return .end(reusable: false)
        default:
            state = .idle
            buffer = nil
            throw Failure("connection closed mid-response")
        }
    }

    private mutating func end() -> Event {
        pendingEnd = false
        state = .idle
        // Bytes after the end of a response mean the upstream is out of step: never reuse.
        let reusable = keepAlive && (buffer?.readableBytes ?? 0) == 0
        buffer = nil
        return .end(reusable: reusable)
    }

    // MARK: Head

    /// Parses a complete head and sets up the body's framing; nil for an informational (1xx) head.
    private mutating func parseHead(_ head: ByteBuffer) throws -> UpstreamResponseHead? {
        fields.removeAll(keepingCapacity: true)
        let parsed = try head.withUnsafeReadableBytes { try Self.scanHead($0, fields: &fields) }
        if (100..<200).contains(parsed.code) {
            // Informational: the real head follows. The gateway answered any `Expect` itself and
            // does not forward upgrades, so a 101 is out of step.
            guard parsed.code != 101 else { throw Failure("unexpected 101 Switching Protocols") }
            interimHeads += 1
            guard interimHeads <= Self.maxInterimHeads else { throw Failure("more than \(Self.maxInterimHeads) interim (1xx) responses") }
            return nil
        }
        let bodyless = requestWasHEAD || parsed.code == 204 || parsed.code == 304
        // Only `chunked` is decoded, and `Transfer-Encoding` is hop by hop (never forwarded): a body
        // in any other coding would reach the client with its coding undeclared. As nginx does,
        // a body framed by anything but one `chunked` fails the exchange (502). Without a body
        // (HEAD, 204, 304: RFC 9112 §6.1 lets a server name the coding a GET would get) the
        // codings frame nothing and are not checked.
        if parsed.codings.present, !parsed.codings.isOneChunked, !bodyless { throw Failure("a Transfer-Encoding other than chunked") }
        let version = HTTPVersion(major: 1, minor: parsed.minor)
        keepAlive = parsed.minor == 1 ? !parsed.connectionClose : parsed.connectionKeepAlive
        // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, and the Content-Length must
        // not reach the client — it would frame the body differently from how it was read.
        // A 204 has no content, so no length either (RFC 9110 §8.6); a 304's is the representation's.
        let forwardedLength = !parsed.codings.present && parsed.code != 204 ? parsed.contentLength : nil
        let response = UpstreamResponseHead(version: version, status: HTTPResponseStatus(statusCode: parsed.code), bytes: head,
                                            fields: fields, contentLength: forwardedLength)

        if bodyless {
            // A head that frames a body where none follows (normal for HEAD: the length a GET
            // would get) leaves the connection out of reuse: should the upstream send that body
            // anyway, in a later read, the next request on the connection — another client's —
            // would take it for its response.
            if parsed.codings.present || (parsed.contentLength ?? 0) > 0 { keepAlive = false }
            pendingEnd = true
            return response
        }
        if parsed.codings.isOneChunked {
            // RFC 9112 §6.1: a message with both must not leave the connection reusable.
            if parsed.contentLength != nil || parsed.minor == 0 { keepAlive = false }
            state = .chunkSize
        } else if let contentLength = parsed.contentLength {
            if contentLength == 0 {
                pendingEnd = true
            } else {
                state = .fixed(remaining: contentLength)
            }
        } else {
            keepAlive = false
            state = .untilClose
        }
        return response
    }

    /// What one pass over a head found.
    private struct ScannedHead {
        var minor = 1
        var code = 0
        var contentLength: Int?
        var codings = TransferCodings()
        var connectionClose = false
        var connectionKeepAlive = false
    }

    /// One pass over a complete head (status line, fields, empty line), without copying it: each
    /// byte is looked at once, by the loop that also validates it (the head is parsed on every
    /// proxied response, so separate passes for line ends, bare CRs, the colon and controls showed
    /// in profiles).
    private static func scanHead(_ bytes: UnsafeRawBufferPointer, fields: inout [UpstreamResponseHead.Field]) throws -> ScannedHead {
        var scanned = ScannedHead()
        let statusEnd = try lineEnd(bytes, from: 0)
        (scanned.minor, scanned.code) = try statusLine(bytes[0..<statusEnd])
        fields.reserveCapacity(12)
        var lineStart = statusEnd + 2
        try tokenBytes.withUnsafeBufferPointer { isToken in
            while true {
                guard lineStart < bytes.count else { throw Failure("head without an empty line") }
                let first = bytes[lineStart]
                if first == 0x0D {
                    // `headLength` cut the head after its first CRLF CRLF: this is that empty line.
                    guard lineStart + 2 == bytes.count, bytes[lineStart + 1] == 0x0A else { throw Failure("bare CR in a line") }
                    return
                }
                if first == 0x20 || first == 0x09 { throw Failure("obsolete line folding") }
                let (name, value, end) = try field(bytes, from: lineStart, isToken: isToken)
                if try classify(bytes, name: name, value: value, into: &scanned) {
                    fields.append(UpstreamResponseHead.Field(name: name, value: value))
                }
                lineStart = end + 2
            }
        }
        return scanned
    }

    /// Notes the framing and connection fields as they are read; false for a field not to keep
    /// in the head (`Content-Length`, which the head carries as a number once checked).
    private static func classify(_ bytes: UnsafeRawBufferPointer, name: Range<Int>, value: Range<Int>, into scanned: inout ScannedHead) throws -> Bool {
        switch name.count {
        case 14 where nameIs(bytes[name], "content-length"):
            let length = try contentLength(bytes[value])
            if let known = scanned.contentLength, known != length { throw Failure("conflicting Content-Length values") }
            scanned.contentLength = length
            return false
        case 17 where nameIs(bytes[name], "transfer-encoding"):
            // Codings may span several fields; `parseHead` decides what they allow.
            scanned.codings.add(bytes[value])
        case 10 where nameIs(bytes[name], "connection"):
            HeaderList.forEachElement(bytes[value]) { option in
                if HeaderNameSet.equalsIgnoringASCIICase(option, "close".utf8) { scanned.connectionClose = true }
                if HeaderNameSet.equalsIgnoringASCIICase(option, "keep-alive".utf8) { scanned.connectionKeepAlive = true }
            }
        default:
            break
        }
        return true
    }

    /// Whether an incomplete head has a line ending in a bare LF among its bytes from `start` on
    /// (those before were looked at by an earlier call). Only a head that did not come whole in
    /// one read is searched; a whole one is checked line by line as it is parsed.
    private static func hasBareLineFeed(_ buffer: ByteBuffer, from start: Int) -> Bool {
        buffer.withUnsafeReadableBytes { bytes in
            var index = start
            while index < bytes.count, let lineFeed = bytes[index...].firstIndex(of: 0x0A) {
                if lineFeed == 0 || bytes[lineFeed - 1] != 0x0D { return true }
                index = lineFeed + 1
            }
            return false
        }
    }

    /// Length of the head including its terminating empty line, if complete. The first `scanned`
    /// bytes were searched before; the terminator can only end after them.
    private static func headLength(_ buffer: ByteBuffer, from scanned: Int) -> Int? {
        buffer.withUnsafeReadableBytes { bytes -> Int? in
            guard bytes.count >= 4 else { return nil }
            var index = max(3, scanned)
            while index < bytes.count {
                // Step over the bytes that cannot end a CRLFCRLF here.
                let byte = bytes[index]
                if byte == 0x0A {
                    if bytes[index - 1] == 0x0D && bytes[index - 2] == 0x0A && bytes[index - 3] == 0x0D { return index + 1 }
                    index += 2
                } else if byte == 0x0D {
                    index += 1
                } else {
                    index += 4
                }
            }
            return nil
        }
    }

    /// One CRLF-terminated line without the CRLF, or nil when incomplete. A bare CR or LF is
    /// refused. `scanned` bytes of the buffer were searched before (an incomplete line); it is
    /// set to what was searched when the line is still incomplete, and to 0 once it is read.
    private static func readLine(_ buffer: inout ByteBuffer, limit: Int, scanned: inout Int) throws -> ByteBuffer? {
        let from = scanned
        let found = buffer.withUnsafeReadableBytes { bytes -> Int? in
            bytes[min(from, bytes.count)...].firstIndex(of: 0x0A)
        }
        guard let newline = found else {
            guard buffer.readableBytes <= limit else { throw Failure("line longer than \(limit) bytes") }
            scanned = buffer.readableBytes
            return nil
        }
        scanned = 0
        guard newline <= limit + 1 else { throw Failure("line longer than \(limit) bytes") }
        guard newline >= 1, buffer.getInteger(at: buffer.readerIndex + newline - 1, as: UInt8.self) == 0x0D else {
            throw Failure("line not terminated by CRLF")
        }
        let line = buffer.readSlice(length: newline - 1)!
        buffer.moveReaderIndex(forwardBy: 2)
        guard !line.withUnsafeReadableBytes({ $0.contains(0x0D) }) else { throw Failure("bare CR in a line") }
        return line
    }

    private static func statusLine(_ bytes: Slice<UnsafeRawBufferPointer>) throws -> (minor: Int, code: Int) {
        // "HTTP/1.1 200" and an optional " reason"
        guard bytes.count >= 12, bytes.starts(with: "HTTP/1.".utf8) else { throw Failure("not an HTTP/1.x status line") }
        let start = bytes.startIndex
        let minor: Int
        switch bytes[start + 7] {
        case UInt8(ascii: "0"): minor = 0
        case UInt8(ascii: "1"): minor = 1
        default: throw Failure("unsupported HTTP version")
        }
        guard bytes[start + 8] == UInt8(ascii: " ") else { throw Failure("malformed status line") }
        var code = 0
        for offset in 9..<12 {
            let digit = bytes[start + offset]
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { throw Failure("malformed status code") }
            code = code * 10 + Int(digit - UInt8(ascii: "0"))
        }
        // RFC 9110 §15: a status outside 100–599 is invalid (libraries use 600–999 for their own errors).
        guard code >= 100, code <= 599, bytes.count == 12 || bytes[start + 12] == UInt8(ascii: " ") else { throw Failure("malformed status code") }
        return (minor, code)
    }

    private static let tokenBytes: [Bool] = (0..<256).map { value in
        let byte = UInt8(value)
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// The field line at `start`: `name: value` as index ranges, the value without surrounding
    /// whitespace (RFC 9112 §5), and the index of the CR ending the line.
    private static func field(_ bytes: UnsafeRawBufferPointer, from start: Int,
                              isToken: UnsafeBufferPointer<Bool>) throws -> (name: Range<Int>, value: Range<Int>, end: Int) {
        var cursor = start
        while cursor < bytes.count, isToken[Int(bytes[cursor])] { cursor += 1 }
        guard cursor > start else { throw Failure("header line without a name") }
        guard cursor < bytes.count, bytes[cursor] == UInt8(ascii: ":") else { throw Failure("invalid header name") }
        let name = start..<cursor
        cursor += 1
        while cursor < bytes.count, bytes[cursor] == 0x20 || bytes[cursor] == 0x09 { cursor += 1 }
        let valueStart = cursor
        var valueEnd = cursor
        // Visible bytes and obs-text extend the value; SP and HTAB only if more follows; any
        // other control (CR included) ends the scan.
        while cursor < bytes.count {
            let byte = bytes[cursor]
            if byte > 0x20 && byte != 0x7F {
                cursor += 1
                valueEnd = cursor
            } else if byte == 0x20 || byte == 0x09 {
                cursor += 1
            } else {
                break
            }
        }
        try expectCRLF(bytes, at: cursor)
        return (name, valueStart..<valueEnd, cursor)
    }

    /// The index of the CR ending the line that starts at `start`.
    private static func lineEnd(_ bytes: UnsafeRawBufferPointer, from start: Int) throws -> Int {
        var cursor = start
        while cursor < bytes.count, bytes[cursor] != 0x0D, bytes[cursor] != 0x0A { cursor += 1 }
        try expectCRLF(bytes, at: cursor)
        return cursor
    }

    /// Fails unless a CRLF starts at `index`, naming what is there instead.
    private static func expectCRLF(_ bytes: UnsafeRawBufferPointer, at index: Int) throws {
        guard index < bytes.count else { throw Failure("line not terminated by CRLF") }
        switch bytes[index] {
        case 0x0D:
            guard index + 1 < bytes.count, bytes[index + 1] == 0x0A else { throw Failure("bare CR in a line") }
        case 0x0A:
            throw Failure("line not terminated by CRLF")
        default:
            throw Failure("control character in a header value")
        }
    }

    private static func nameIs(_ name: Slice<UnsafeRawBufferPointer>, _ lower: StaticString) -> Bool {
        lower.withUTF8Buffer { HeaderNameSet.equalsIgnoringASCIICase(name, $0) }
    }

    /// A `Content-Length` value: digits, or a list of identical values (RFC 9112 §6.3).
    private static func contentLength(_ value: Slice<UnsafeRawBufferPointer>) throws -> Int {
        // Split here rather than with `HeaderList`, which skips empty elements: in a length, an
        // empty element is malformed framing and must fail the response.
        var result: Int?
        var itemStart = value.startIndex
        while true {
            let itemEnd = value[itemStart...].firstIndex(of: UInt8(ascii: ",")) ?? value.endIndex
            let digits = HeaderList.trimmed(value[itemStart..<itemEnd])
            guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                throw Failure("invalid Content-Length")
            }
            let length = digits.reduce(0) { $0 * 10 + Int($1 - 0x30) }
            if let result, result != length { throw Failure("conflicting Content-Length values") }
            result = length
            guard itemEnd < value.endIndex else { return length }
            itemStart = itemEnd + 1
        }
    }

    /// The size on a chunk-size line; chunk extensions are ignored.
    private static func chunkSize(_ line: ByteBuffer) throws -> Int {
        var size = 0
        var digits = 0
        for byte in line.readableBytesView {
            let value: Int
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = Int(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = Int(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value = Int(byte - UInt8(ascii: "A") + 10)
            case UInt8(ascii: ";"), UInt8(ascii: " "), UInt8(ascii: "\t"):
                guard digits > 0 else { throw Failure("invalid chunk size") }
                return size
            default:
                throw Failure("invalid chunk size")
            }
            digits += 1
            guard digits <= 15 else { throw Failure("chunk size too large") }
            size = size * 16 + value
        }
        guard digits > 0 else { throw Failure("invalid chunk size") }
        return size
    }
}
