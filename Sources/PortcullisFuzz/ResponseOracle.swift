/// An independent reading of an upstream's response bytes (RFC 9112), written plainly — split into
/// lines, check each, frame the body by §6.3 — to check `UpstreamResponseParser` against. It
/// answers only where the rules are simple; where the parser is deliberately stricter or more
/// lenient than the RFC (limits, leading zeros, what it skips past in extensions and trailers) it
/// says `unsure` and the harness compares nothing.
enum ResponseOracle {
    struct Message: Equatable {
        var status: Int
        var minorVersion: Int
        var fields: [(name: [UInt8], value: [UInt8])]
        /// The length a client is told: nil for chunked and close-delimited bodies and for 204.
        var contentLength: Int?
        var body: [UInt8]
        var reusable: Bool

        static func == (lhs: Message, rhs: Message) -> Bool {
            lhs.status == rhs.status && lhs.minorVersion == rhs.minorVersion && lhs.contentLength == rhs.contentLength
                && lhs.body == rhs.body && lhs.reusable == rhs.reusable
                && lhs.fields.map({ $0.name }) == rhs.fields.map({ $0.name }) && lhs.fields.map({ $0.value }) == rhs.fields.map({ $0.value })
        }
    }

    enum Verdict: Equatable {
        /// A complete response (to a GET) and how it is framed.
        case message(Message)
        /// Malformed or cut short: the exchange must fail.
        case invalid
        /// Outside what this oracle decides.
        case unsure
    }

    private struct Unsure: Error {}
    private struct Invalid: Error {}

    static func read(_ input: [UInt8]) -> Verdict {
        do {
            return .message(try message(input))
        } catch is Unsure {
            return .unsure
        } catch {
            return .invalid
        }
    }

    private static func isToken(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        default: Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }

    /// Field-value bytes (RFC 9110 §5.5): visible ASCII, obs-text, SP and HTAB.
    private static func isValueByte(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || (byte > 0x20 && byte != 0x7F)
    }

    private static func trim(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var slice = bytes
        while let first = slice.first, first == 0x20 || first == 0x09 { slice = slice.dropFirst() }
        while let last = slice.last, last == 0x20 || last == 0x09 { slice = slice.dropLast() }
        return slice
    }

    private static func lower(_ bytes: some Sequence<UInt8>) -> [UInt8] {
        bytes.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
    }

    /// The comma-separated elements of a list value, trimmed, empty ones skipped.
    private static func elements(_ value: [UInt8]) -> [[UInt8]] {
        value.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false).map { Array(trim($0)) }.filter { !$0.isEmpty }
    }

    /// The offset just past the first CRLF CRLF at or after `start`.
    private static func headEnd(_ input: [UInt8], from start: Int) -> Int? {
        var index = start
        while index + 3 < input.count {
            if input[index] == 0x0D, input[index + 1] == 0x0A, input[index + 2] == 0x0D, input[index + 3] == 0x0A { return index + 4 }
            index += 1
        }
        return nil
    }

    /// Splits a head (without its final CRLF CRLF) into lines; any CR or LF not in a CRLF is invalid.
    private static func lines(_ head: ArraySlice<UInt8>) throws -> [ArraySlice<UInt8>] {
        var result: [ArraySlice<UInt8>] = []
        var start = head.startIndex
        var index = head.startIndex
        while index < head.endIndex {
            let byte = head[index]
            if byte == 0x0D {
                guard index + 1 < head.endIndex, head[index + 1] == 0x0A else { throw Invalid() }
                result.append(head[start..<index])
                index += 2
                start = index
                continue
            }
            if byte == 0x0A { throw Invalid() }
            index += 1
        }
        result.append(head[start..<head.endIndex])
        return result
    }

    private struct Head {
        var minor = 1
        var code = 0
        var fields: [(name: [UInt8], value: [UInt8])] = []
    }

    private static func head(_ bytes: ArraySlice<UInt8>) throws -> Head {
        var head = Head()
        let lines = try lines(bytes)
        let status = Array(lines[0])
        let prefix = Array("HTTP/1.".utf8)
        guard status.count >= 12, Array(status[0..<7]) == prefix else { throw Invalid() }
        switch status[7] {
        case UInt8(ascii: "0"): head.minor = 0
        case UInt8(ascii: "1"): head.minor = 1
        default: throw Invalid()
        }
        guard status[8] == 0x20 else { throw Invalid() }
        for digit in status[9..<12] {
            guard digit >= 0x30, digit <= 0x39 else { throw Invalid() }
            head.code = head.code * 10 + Int(digit - 0x30)
        }
        // RFC 9110 §15: a status outside 100–599 is invalid.
        guard head.code >= 100, head.code <= 599 else { throw Invalid() }
        if status.count > 12 {
            guard status[12] == 0x20 else { throw Invalid() }
            // The parser skips any reason phrase; only a clean one is decided here.
            guard status[13...].allSatisfy(isValueByte) else { throw Unsure() }
        }
        for line in lines.dropFirst() {
            guard let first = line.first else { throw Invalid() }  // an empty line inside the head cannot happen
            if first == 0x20 || first == 0x09 { throw Invalid() }  // obs-fold
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { throw Invalid() }
            let name = line[line.startIndex..<colon]
            guard !name.isEmpty, name.allSatisfy(isToken) else { throw Invalid() }
            let rest = line[(colon + 1)...]
            guard rest.allSatisfy(isValueByte) else { throw Invalid() }
            head.fields.append((name: Array(name), value: Array(trim(rest))))
        }
        return head
    }

    /// A Content-Length value: equal decimal numbers, comma-separated (RFC 9112 §6.3).
    private static func contentLength(_ value: [UInt8]) throws -> Int {
        var result: Int?
        for item in value.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
            let digits = trim(item)
            guard !digits.isEmpty, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { throw Invalid() }
            guard digits.count <= 18 else { throw Unsure() }  // the parser's limit
            let length = digits.reduce(0) { $0 * 10 + Int($1 - 0x30) }
            if let result, result != length { throw Invalid() }
            result = length
        }
        return result!
    }

    private static func message(_ input: [UInt8]) throws -> Message {
        var position = 0
        var head: Head
        var interimHeads = 0
        while true {
            guard let end = headEnd(input, from: position) else {
                guard input.count - position < 60_000 else { throw Unsure() }
                throw Invalid()  // cut short
            }
            guard end - position <= 60_000 else { throw Unsure() }
            head = try Self.head(input[position..<(end - 4)])
            position = end
            // Framing fields are checked in every head, interim ones included.
            for field in head.fields where lower(field.name) == Array("content-length".utf8) {
                _ = try contentLength(field.value)
            }
            guard (100..<200).contains(head.code) else { break }
            if head.code == 101 { throw Invalid() }
            interimHeads += 1
            guard interimHeads <= 8 else { throw Unsure() }  // the parser's limit
        }

        var length: Int?
        var transferEncoding = false
        var codings: [[UInt8]] = []
        var close = false
        var keepAliveOption = false
        var kept: [(name: [UInt8], value: [UInt8])] = []
        for field in head.fields {
            switch lower(field.name) {
            case Array("content-length".utf8):
                let value = try contentLength(field.value)
                if let length, length != value { throw Invalid() }
                length = value
                continue
            case Array("transfer-encoding".utf8):
                transferEncoding = true
                codings += elements(field.value)
            case Array("connection".utf8):
                for option in elements(field.value).map(lower) {
                    if option == Array("close".utf8) { close = true }
                    if option == Array("keep-alive".utf8) { keepAliveOption = true }
                }
            default:
                break
            }
            kept.append(field)
        }
        var keepAlive = head.minor == 1 ? !close : keepAliveOption
        var message = Message(status: head.code, minorVersion: head.minor, fields: kept,
                              contentLength: transferEncoding || head.code == 204 ? nil : length, body: [], reusable: false)
        let rest = input[position...]
        if head.code == 204 || head.code == 304 {
            // A body framed where none may follow: the connection is not reused.
            message.reusable = keepAlive && rest.isEmpty && !transferEncoding && (length ?? 0) == 0
            return message
        }
        if transferEncoding {
            // The gateway's rule, stricter than RFC 9112 (which reads a body in another coding to
            // the close): a body's codings are exactly one `chunked`, since a coding the gateway
            // does not decode would reach the client undeclared.
            guard codings.count == 1, lower(codings[0]) == Array("chunked".utf8) else { throw Invalid() }
            if length != nil || head.minor == 0 { keepAlive = false }
            let (body, end) = try chunked(input, from: position)
            message.body = body
            message.reusable = keepAlive && end == input.count
            return message
        }
        if let length {
            guard rest.count >= length else { throw Invalid() }
            message.body = Array(rest.prefix(length))
            message.reusable = keepAlive && rest.count == length
            return message
        }
        message.body = Array(rest)
        return message
    }

    /// A chunk-size line's extensions (RFC 9112 §7.1.1), strictly.
    private static func isStrictExtension(_ bytes: ArraySlice<UInt8>) -> Bool {
        // *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ), without quoted-strings.
        var index = bytes.startIndex
        func skipWhitespace() { while index < bytes.endIndex, bytes[index] == 0x20 || bytes[index] == 0x09 { index += 1 } }
        func token() -> Bool {
            let start = index
            while index < bytes.endIndex, isToken(bytes[index]) { index += 1 }
            return index > start
        }
        while true {
            skipWhitespace()
            if index == bytes.endIndex { return true }
            guard bytes[index] == UInt8(ascii: ";") else { return false }
            index += 1
            skipWhitespace()
            guard token() else { return false }
            skipWhitespace()
            if index < bytes.endIndex, bytes[index] == UInt8(ascii: "=") {
                index += 1
                skipWhitespace()
                guard token() else { return false }
            }
        }
    }

    /// The line starting at `start` without its CRLF, and where the next line starts.
    private static func line(_ input: [UInt8], from start: Int) throws -> (ArraySlice<UInt8>, Int) {
        guard let newline = input[start...].firstIndex(of: 0x0A) else {
            guard input.count - start < 4000 else { throw Unsure() }
            throw Invalid()  // cut short
        }
        guard newline - start < 4000 else { throw Unsure() }
        guard newline > start, input[newline - 1] == 0x0D else { throw Invalid() }
        let line = input[start..<(newline - 1)]
        guard !line.contains(0x0D) else { throw Invalid() }
        return (line, newline + 1)
    }

    /// A chunked body starting at `start`: the data, and the offset just past the body.
    private static func chunked(_ input: [UInt8], from start: Int) throws -> ([UInt8], Int) {
        var body: [UInt8] = []
        var position = start
        // Size lines and CRLFs: where they pass 16 KiB the parser may refuse framing out of
        // proportion to the data (its limit); below, it cannot.
        var framing = 0
        while true {
            let (sizeLine, next) = try line(input, from: position)
            framing += sizeLine.count + 4
            guard framing <= 16 * 1024 else { throw Unsure() }
            var size = 0
            var digits = 0
            var index = sizeLine.startIndex
            while index < sizeLine.endIndex, let value = hexValue(sizeLine[index]) {
                size = size &* 16 &+ value
                digits += 1
                index += 1
            }
            guard digits > 0 else { throw Invalid() }
            guard digits <= 15 else { throw Unsure() }  // the parser's limit, leading zeros included
            let extensions = sizeLine[index...]
            if let first = extensions.first {
                guard first == UInt8(ascii: ";") || first == 0x20 || first == 0x09 else { throw Invalid() }
                // The parser skips whatever follows the size; only well-formed extensions are decided here.
                guard isStrictExtension(extensions) else { throw Unsure() }
            }
            position = next
            if size == 0 { break }
            guard input.count - position >= size + 2 else { throw Invalid() }
            body += input[position..<(position + size)]
            position += size
            guard input[position] == 0x0D, input[position + 1] == 0x0A else { throw Invalid() }
            position += 2
        }
        // Trailer section: field lines, then an empty line. The parser reads past them unchecked.
        while true {
            let (trailer, next) = try line(input, from: position)
            position = next
            if trailer.isEmpty { return (body, position) }
            guard let colon = trailer.firstIndex(of: UInt8(ascii: ":")), colon > trailer.startIndex,
                  trailer[..<colon].allSatisfy(isToken), trailer[(colon + 1)...].allSatisfy(isValueByte) else { throw Unsure() }
        }
    }

    private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(byte - UInt8(ascii: "a")) + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(byte - UInt8(ascii: "A")) + 10
        default: nil
        }
    }
}
