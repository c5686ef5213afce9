import PortcullisJOSE
import PortcullisRedis

/// Reads hashes a Redis writer may have made arbitrarily large — key-set records, node records,
/// revocation acknowledgements — refusing one over its bounds before any of it leaves Redis.
/// Read whole, a large field in a key-set record would cost a gateway memory several times its
/// size, and one in a junk node record (within a gateway's own Redis rights) would cost every
/// node as much at every heartbeat and hold its shared connection past the command timeout.
///
/// One read-only script (EVALSHA_RO: Redis takes its keys as read, which a read-only ACL right
/// allows) measures each hash — `HLEN`, then the names and `HSTRLEN` of its fields — and returns
/// it only within the bounds.
struct BoundedHashRead: Sendable {
    let maxFields: Int
    let maxBytes: Int

    /// One JWKS document (at most `JWKSDownloader.maxDocumentBytes`, as fetched) and a few short fields.
    static let keySetRecord = BoundedHashRead(maxFields: 16, maxBytes: JWKSDownloader.maxDocumentBytes + 64 * 1024)
    /// Sixteen signed fields, the MAC and the acknowledgement; `keysets` names each issuer's version.
    static let nodeRecord = BoundedHashRead(maxFields: 32, maxBytes: 64 * 1024)
    /// One signed acknowledgement of about 200 bytes per node.
    static let acknowledgements = BoundedHashRead(maxFields: 4096, maxBytes: 4 << 20)

    enum Outcome: Sendable {
        /// The hash as HGETALL returns it (empty when there is none).
        case hash([RedisValue])
        /// Refused unread: why, for the tampering report.
        case refused(String)
    }

    /// KEYS: the hashes. ARGV: the most bytes (names and values), the most fields. Returns, for
    /// each key, its hash, or -1 for too many fields, -2 for a key of another type (a writer's
    /// set where a record belongs must not fail the read of the others), or its size when over
    /// the bytes.
    static let script = RedisScript("""
    local out = {}
    for i, key in ipairs(KEYS) do
      local fields = redis.pcall('HLEN', key)
      if type(fields) == 'table' then
        out[i] = -2
      elseif fields > tonumber(ARGV[2]) then
        out[i] = -1
      else
        local total = 0
        for _, field in ipairs(redis.call('HKEYS', key)) do
          total = total + #field + redis.call('HSTRLEN', key, field)
        end
        if total > tonumber(ARGV[1]) then out[i] = total else out[i] = redis.call('HGETALL', key) end
      end
    end
    return out
    """)

    func read(_ client: RedisClient, key: String) async throws -> Outcome {
        try await read(client, keys: [key])[0]
    }

    /// Each of `keys`, in one script call.
    func read(_ client: RedisClient, keys: [String]) async throws -> [Outcome] {
        guard !keys.isEmpty else { return [] }
        let reply = try await client.evalScript(Self.script, keys: keys.map { RedisArgument($0) },
                                                arguments: [RedisArgument(maxBytes), RedisArgument(maxFields)], readOnly: true)
        let items = reply.array ?? []
        guard items.count == keys.count else { throw RedisError.protocolError("the bounded hash read returned \(items.count) items for \(keys.count) keys") }
        return items.map { item in
            if let size = item.int {
                switch size {
                case -2: return .refused("not a hash")
                case ..<0: return .refused("more than \(maxFields) fields")
                default: return .refused("\(size) bytes, more than such a hash holds (\(maxBytes))")
                }
            }
            return .hash(item.array ?? [])
        }
    }
}
