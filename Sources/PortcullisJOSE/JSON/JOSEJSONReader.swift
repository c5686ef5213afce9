/// Why a JOSE JSON text was refused, and where.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Byte offset into the decoded JSON text.
    public let offset: Int
    /// What is wrong there.
    public let message: String
    /// `invalid JSON at byte <offset>: <message>`.
    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}

/// A strict RFC 8259 reader for JOSE headers, JWT claims and JWK sets.
///
/// Hand-written rather than Foundation's `JSONDecoder`/`JSONSerialization` for two reasons:
/// - Correctness: Foundation silently keeps one of two duplicate member names (RFC 7515 §5.2 and
///   RFC 8725 §3.10 want them rejected: two parsers that pick different duplicates can disagree on
///   `alg` or `iss`), and it is lenient about what it accepts around the edges (BOMs, NaN).
/// - Cost: it runs on every uncached request, and `JSONDecoder` spends most of its time per token
///   on `Data`/`Any` boxing (figures: docs/benchmarks.md). This reads straight from the decoded
///   bytes into `JSONValue`.
///
/// Refused: a byte-order mark, invalid UTF-8 (including overlong forms and encoded surrogates),
/// unpaired `\u` surrogate escapes, raw control characters in strings, duplicate member names
/// (compared after unescaping), `NaN`/`Infinity` and numbers that overflow a Double, leading
/// zeros, trailing garbage, nesting deeper than `maxDepth` containers, and more than `maxValues`
/// values in all (for texts a Redis writer may have written: a large `[{},{},…]` parsed whole
/// would cost every node memory many times its size before its MAC could be checked).
public struct JOSEJSONReader: ~Copyable {
    /// RFC 7515 has no limit; 64 levels is far beyond any real header, claims set or JWKS.
    public static let defaultMaxDepth = 64

    private let bytes: UnsafeRawBufferPointer
    private var index = 0
    private let maxDepth: Int
    private var depth = 0
    private var valuesLeft: Int

    private init(bytes: UnsafeRawBufferPointer, maxDepth: Int, maxValues: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
        self.valuesLeft = maxValues
    }

    /// Parses one JSON text (any value at the top level).
    public static func parse(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = defaultMaxDepth,
                             maxValues: Int = .max) throws(JSONParseError) -> JSONValue {
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF {
            throw JSONParseError(offset: 0, message: "byte-order mark")
        }
        var reader = JOSEJSONReader(bytes: bytes, maxDepth: maxDepth, maxValues: maxValues)
        reader.skipWhitespace()
        let value = try reader.parseValue()
        reader.skipWhitespace()
        guard reader.index == bytes.count else { throw reader.fail("unexpected data after the JSON value") }
        return value
    }

    /// Parses one JSON text from an array of bytes.
    public static func parse(_ bytes: [UInt8], maxDepth: Int = defaultMaxDepth, maxValues: Int = .max) throws(JSONParseError) -> JSONValue {
        let result: Result<JSONValue, JSONParseError> = bytes.withUnsafeBytes { buffer in
            do throws(JSONParseError) { return .success(try parse(buffer, maxDepth: maxDepth, maxValues: maxValues)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    private func fail(_ message: String) -> JSONParseError {
        JSONParseError(offset: index, message: message)
    }

    @inline(__always)
    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func parseValue() throws(JSONParseError) -> JSONValue {
        guard index < bytes.count else { throw fail("unexpected end of input") }
        valuesLeft -= 1
        if valuesLeft < 0 { throw fail("more values than allowed") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw fail("unexpected character")
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - index >= count else { throw fail("unexpected end of input") }
        let start = literal.utf8Start
        for offset in 0..<count where bytes[index + offset] != start[offset] {
            throw fail("invalid literal")
        }
        index += count
    }

    private mutating func enter() throws(JSONParseError) {
        depth += 1
        if depth > maxDepth { throw fail("nesting deeper than \(maxDepth) levels") }
    }

    private mutating func parseObject() throws(JSONParseError) -> JSONValue {
        try enter()
        index += 1
        var members: [String: JSONValue] = [:]
        members.reserveCapacity(8)  // headers have ~3 members, claims ~10: fewer rehashes while growing
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            depth -= 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a member name") }
            let keyOffset = index
            let key = try parseString()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            index += 1
            skipWhitespace()
            let value = try parseValue()
            if members.updateValue(value, forKey: key) != nil {
                throw JSONParseError(offset: keyOffset, message: "duplicate member name")
            }
            skipWhitespace()
            guard index < bytes.count else { throw fail("unexpected end of input") }
            switch bytes[index] {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"):
                index += 1
                depth -= 1
                return .object(members)
            default: throw fail("expected ',' or '}'")
            }
        }
    }

    private mutating func parseArray() throws(JSONParseError) -> JSONValue {
        try enter()
        index += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            depth -= 1
            return .array(items)
        }
        while true {
            skipWhitespace()
            items.append(try parseValue())
            skipWhitespace()
            guard index < bytes.count else { throw fail("unexpected end of input") }
            switch bytes[index] {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"):
                index += 1
                depth -= 1
                return .array(items)
            default: throw fail("expected ',' or ']'")
            }
        }
    }

    private mutating func parseString() throws(JSONParseError) -> String {
        index += 1 // opening quote
        let start = index
        var hasEscape = false
        while true {
            guard index < bytes.count else { throw fail("unterminated string") }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") { break }
            if byte < 0x20 { throw fail("control character in string") }
            if byte == UInt8(ascii: "\\") {
                hasEscape = true
                index += 2
            } else {
                index += 1
            }
        }
        let end = index
        index += 1 // closing quote
        if !hasEscape {
            let slice = UnsafeBufferPointer<UInt8>(rebasing: bytes.assumingMemoryBound(to: UInt8.self)[start..<end])
            // Nearly every JOSE string is ASCII, which is valid UTF-8 as is; `String(validating:)`
            // instantiates generic metadata on each call and showed up in profiles.
            if Self.isASCII(slice) { return String(decoding: slice, as: UTF8.self) }
            guard let text = String(validating: slice, as: UTF8.self) else {
                throw JSONParseError(offset: start, message: "invalid UTF-8 in string")
            }
            return text
        }
        return try unescape(from: start, to: end)
    }

    private func unescape(from start: Int, to end: Int) throws(JSONParseError) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(end - start)
        var i = start
        while i < end {
            let byte = bytes[i]
            guard byte == UInt8(ascii: "\\") else {
                out.append(byte)
                i += 1
                continue
            }
            guard i + 1 < end else { throw JSONParseError(offset: i, message: "invalid escape") }
            switch bytes[i + 1] {
            case UInt8(ascii: "\""): out.append(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
            case UInt8(ascii: "/"): out.append(UInt8(ascii: "/"))
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4(at: i + 2, end: end)
                i += 6
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    guard i + 1 < end, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                        throw JSONParseError(offset: i, message: "unpaired surrogate escape")
                    }
                    let low = try hex4(at: i + 2, end: end)
                    guard low >= 0xDC00 && low < 0xE000 else { throw JSONParseError(offset: i, message: "unpaired surrogate escape") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
                } else if scalar >= 0xDC00 && scalar < 0xE000 {
                    throw JSONParseError(offset: i - 6, message: "unpaired surrogate escape")
                }
                appendUTF8(scalar, to: &out)
                continue
            default:
                throw JSONParseError(offset: i, message: "invalid escape")
            }
            i += 2
        }
        guard let text = String(validating: out, as: UTF8.self) else {
            throw JSONParseError(offset: start, message: "invalid UTF-8 in string")
        }
        return text
    }

    private func hex4(at position: Int, end: Int) throws(JSONParseError) -> UInt32 {
        guard position + 4 <= end else { throw JSONParseError(offset: position, message: "invalid \\u escape") }
        var value: UInt32 = 0
        for offset in 0..<4 {
            let c = bytes[position + offset]
            let digit: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = c - UInt8(ascii: "A") + 10
            default: throw JSONParseError(offset: position, message: "invalid \\u escape")
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    private func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
        switch scalar {
        case 0..<0x80:
            out.append(UInt8(scalar))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | scalar >> 6))
            out.append(UInt8(0x80 | scalar & 0x3F))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | scalar >> 12))
            out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            out.append(UInt8(0x80 | scalar & 0x3F))
        default:
            out.append(UInt8(0xF0 | scalar >> 18))
            out.append(UInt8(0x80 | scalar >> 12 & 0x3F))
            out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            out.append(UInt8(0x80 | scalar & 0x3F))
        }
    }

    private mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = index
        var negative = false
        if bytes[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        guard index < bytes.count, isDigit(bytes[index]) else { throw fail("invalid number") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            if index < bytes.count, isDigit(bytes[index]) { throw fail("leading zero in number") }
        } else {
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        var isInteger = true
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            isInteger = false
            index += 1
            guard index < bytes.count, isDigit(bytes[index]) else { throw fail("invalid number") }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            isInteger = false
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count, isDigit(bytes[index]) else { throw fail("invalid number") }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if isInteger {
            // Accumulate negatively so Int64.min parses; fall through to Double on overflow.
            var value: Int64 = 0
            var overflow = false
            for i in (negative ? start + 1 : start)..<index {
                let (times, o1) = value.multipliedReportingOverflow(by: 10)
                let (next, o2) = times.subtractingReportingOverflow(Int64(bytes[i] - UInt8(ascii: "0")))
                if o1 || o2 { overflow = true; break }
                value = next
            }
            if !overflow {
                if negative { return .integer(value) }
                if value != Int64.min { return .integer(-value) }
            }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let number = Double(text), number.isFinite else {
            throw JSONParseError(offset: start, message: "number out of range")
        }
        return .number(number)
    }

    @inline(__always)
    static func isASCII(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var index = 0
        var combined: UInt8 = 0
        while index < bytes.count {
            combined |= bytes[index]
            index += 1
        }
        return combined & 0x80 == 0
    }

    @inline(__always)
    private func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
}
