import Foundation
import PortcullisRedis

/// Writes key-set records and announces them (the control plane is the one fetcher per issuer).
public struct KeySetPublisher: Sendable {
    let client: RedisClient
    let keys: ClusterKeys
    let mac: ClusterMAC

    public init(client: RedisClient, keys: ClusterKeys, mac: ClusterMAC) {
        self.client = client
        self.keys = keys
        self.mac = mac
    }

    /// Stores `jwks` for `issuer` and tells every node; returns the record (its version).
    /// The serial is the later of now (ms) and the stored (verified) record's serial + 1, so it
    /// grows even across control planes whose clocks differ.
    @discardableResult
    public func publish(issuer: String, jwks: String, fetchedAtMillis: Int64 = Int64(Date().timeIntervalSince1970 * 1000)) async throws -> KeySetRecord {
        // Only a verified record's serial counts: an unsigned one could push every later serial out of range.
        let stored = try await record(issuer: issuer)?.serial ?? 0
        let record = KeySetRecord(issuer: issuer, jwks: jwks, serial: max(fetchedAtMillis, stored < .max ? stored + 1 : stored),
                                  fetchedAtMillis: fetchedAtMillis, mac: mac)
        _ = try await client.evalScript(Self.publishScript, keys: [RedisArgument(keys.keySet(issuer))], arguments: [
            RedisArgument(keys.keySetChannel), RedisArgument(KeySetAnnouncement(version: record.version, issuer: issuer).wireText),
        ] + record.fields)
        return record
    }

    /// KEYS: the issuer's key-set record. ARGV: the announcement's channel and text, then the
    /// record's fields and values (`KeySetRecord.fields`).
    ///
    /// The record is replaced whole, whatever it held: fields a Redis writer added to it would
    /// otherwise make every gateway refuse every later set of the issuer (a record too large to
    /// read), and a rotation would switch signing to a key no gateway holds. A key of another
    /// type there is replaced too.
    static let publishScript = RedisScript("""
    redis.call('DEL', KEYS[1])
    redis.call('HSET', KEYS[1], unpack(ARGV, 3))
    redis.call('PUBLISH', ARGV[1], ARGV[2])
    return 1
    """)

    // MARK: Fetch throttling and the unknown-kid cache

    /// The key of the cluster-wide lease that throttles fetches of `issuer`'s key set (taken
    /// with `SET NX PX` by the control plane's lease, `ClusterLock`).
    public func fetchLeaseKey(issuer: String) -> String {
        keys.keySetFetchLock(issuer)
    }

    /// How long the fetch lease of `issuer` is still held; zero when it is free.
    public func fetchLeaseRemaining(issuer: String) async throws -> Duration {
        let millis = try await client.send("PTTL", RedisArgument(keys.keySetFetchLock(issuer))).int ?? 0
        return .milliseconds(max(millis, 0))
    }

    /// Whether a fetch of `issuer`'s set found no `kid` lately (`rememberMissing`).
    public func isKnownMissing(kid: String, issuer: String) async throws -> Bool {
        try await client.send("EXISTS", RedisArgument(keys.keySetMissingKid(issuer, kid))).int == 1
    }

    /// Notes for `duration` (at least a millisecond) that `issuer`'s set has no `kid`, so that
    /// gateways' requests for it do not make every control plane fetch again meanwhile.
    public func rememberMissing(kid: String, issuer: String, for duration: Duration) async throws {
        _ = try await client.send("SET", RedisArgument(keys.keySetMissingKid(issuer, kid)), "1", "PX", RedisArgument(max(duration.wholeMilliseconds, 1)))
    }

    /// The stored record for `issuer`, verified (nil when absent or not valid).
    public func record(issuer: String) async throws -> KeySetRecord? {
        guard case .hash(let hash) = try await BoundedHashRead.keySetRecord.read(client, key: keys.keySet(issuer)) else { return nil }
        return try? KeySetRecord.read(hash: hash, issuer: issuer, mac: mac)
    }
}
