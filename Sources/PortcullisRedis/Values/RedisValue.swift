/// A reply from Redis (RESP2).
///
/// `.error` appears only nested, e.g. inside an `EXEC` result; a top-level error reply is thrown as
/// `RedisError.errorReply`.
public enum RedisValue: Sendable, Hashable {
    /// A simple string reply, e.g. `OK`.
    case status(String)
    /// An error reply nested in another reply; the full message.
    case error(String)
    /// An integer reply.
    case integer(Int64)
    /// A bulk string reply: binary-safe bytes.
    case bulkString([UInt8])
    /// The nil reply (a null bulk string or array).
    case null
    /// An array reply.
    case array([RedisValue])

    /// A status, or a bulk string that is valid UTF-8.
    public var string: String? {
        switch self {
        case .status(let text): text
        case .bulkString(let bytes): String(validating: bytes, as: UTF8.self)
        default: nil
        }
    }

    /// A bulk string's bytes, or a status's UTF-8 bytes.
    public var bytes: [UInt8]? {
        switch self {
        case .bulkString(let bytes): bytes
        case .status(let text): Array(text.utf8)
        default: nil
        }
    }

    /// An integer, or a bulk string or status that parses as one (Redis returns numbers as bulk strings in many places).
    public var int: Int64? {
        switch self {
        case .integer(let value): value
        case .bulkString, .status: string.flatMap { Int64($0) }
        default: nil
        }
    }

    /// The elements of an array reply.
    public var array: [RedisValue]? {
        if case .array(let elements) = self { elements } else { nil }
    }

    /// True for the nil reply (a missing key, a null array).
    public var isNull: Bool {
        if case .null = self { true } else { false }
    }
}

extension RedisValue: CustomStringConvertible {
    /// For logs: `+status`, `-error`, `:integer`, a bulk string in quotes (`<N bytes>` when not
    /// UTF-8), `(nil)`, `[a, b]`.
    public var description: String {
        switch self {
        case .status(let text): "+\(text)"
        case .error(let text): "-\(text)"
        case .integer(let value): ":\(value)"
        case .bulkString(let bytes): String(validating: bytes, as: UTF8.self).map { "\"\($0)\"" } ?? "<\(bytes.count) bytes>"
        case .null: "(nil)"
        case .array(let elements): "[" + elements.map(\.description).joined(separator: ", ") + "]"
        }
    }
}
