import Crypto

/// A Lua script run with `EVALSHA` (see `RedisClient.evalScript`).
public struct RedisScript: Sendable, Hashable {
    /// The Lua source, sent with `SCRIPT LOAD` when Redis does not have the script cached.
    public let source: String
    /// Lowercase hex SHA-1 of `source`, as Redis names cached scripts.
    public let sha1: String

    /// A script with `source`, its SHA-1 computed once here.
    public init(_ source: String) {
        self.source = source
        self.sha1 = Insecure.SHA1.hash(data: Array(source.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}
