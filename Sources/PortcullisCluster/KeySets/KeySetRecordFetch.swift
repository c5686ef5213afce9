import PortcullisJOSE
import PortcullisRedis

/// Reads a key-set record's hash from Redis, refusing one too large to be a record before any of
/// it leaves Redis. The record's key may be written by whoever holds the control plane's Redis
/// credential, and a node read it whole on every announcement: a 400 MB `jwks` field took a
/// gateway to 1.5 GB and its shared Redis connection past the command timeout (an attacker
/// review). A record holds one JWKS document (at most `JWKSDownloader.maxDocumentBytes`, as
/// fetched) and a few short fields.
enum KeySetRecordFetch {
    static let maxFields = 16
    static let maxBytes = JWKSDownloader.maxDocumentBytes + 64 * 1024

    enum Outcome: Sendable {
        /// The hash as HGETALL returns it (empty when there is no record).
        case hash([RedisValue])
        /// Refused unread: why, for the tampering report.
        case oversized(String)
    }

    /// KEYS: the record. ARGV: the most bytes, the most fields. Returns the hash, or -1 for too
    /// many fields, or the total size when over the limit (names and values counted). Run with
    /// EVALSHA_RO: Redis takes the keys of a plain EVALSHA as written, which a gateway's
    /// read-only right on key-set records refuses.
    static let script = RedisScript("""
    if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[2]) then return -1 end
    local total = 0
    for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
      total = total + #field + redis.call('HSTRLEN', KEYS[1], field)
    end
    if total > tonumber(ARGV[1]) then return total end
    return redis.call('HGETALL', KEYS[1])
    """)

    static func fetch(_ client: RedisClient, key: String) async throws -> Outcome {
        let reply = try await client.evalScript(script, keys: [RedisArgument(key)],
                                                arguments: [RedisArgument(maxBytes), RedisArgument(maxFields)], readOnly: true)
        if let size = reply.int {
            return .oversized(size < 0 ? "more than \(maxFields) fields" : "\(size) bytes, more than a key-set record holds (\(maxBytes))")
        }
        return .hash(reply.array ?? [])
    }
}
