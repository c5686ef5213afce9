/// One argument of a Redis command: a binary-safe byte string.
public struct RedisArgument: Sendable, Hashable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    /// The bytes sent to Redis.
    public let bytes: [UInt8]

    /// The string's UTF-8 bytes.
    public init(_ string: String) {
        bytes = Array(string.utf8)
    }

    /// Arbitrary bytes (may contain `\0`, `\r\n`).
    public init(bytes: some Sequence<UInt8>) {
        self.bytes = Array(bytes)
    }

    /// The decimal representation, as Redis expects integers.
    public init(_ int: Int) {
        bytes = Array(String(int).utf8)
    }

    /// The decimal representation, as Redis expects integers.
    public init(_ int64: Int64) {
        bytes = Array(String(int64).utf8)
    }

    /// The shortest representation that round-trips (`1.5`, `1e+20`, `inf`, `-inf`), all of which Redis parses.
    public init(_ double: Double) {
        bytes = Array(double.description.utf8)
    }

    /// The literal's UTF-8 bytes.
    public init(stringLiteral value: String) {
        self.init(value)
    }

    /// The literal in decimal.
    public init(integerLiteral value: Int) {
        self.init(value)
    }
}

extension RedisArgument: CustomStringConvertible {
    /// The bytes as text when they are valid UTF-8, else `<N bytes>`.
    public var description: String {
        String(validating: bytes, as: UTF8.self) ?? "<\(bytes.count) bytes>"
    }
}
