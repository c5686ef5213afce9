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
        _ = try await client.evalScript(Self.publishScript, keys: [RedisArgument(keys.keySet(issuer)), RedisArgument(keys.keySetIssuers)], arguments: [
            RedisArgument(issuer), RedisArgument(jwks), RedisArgument(record.version), RedisArgument(record.serial), RedisArgument(fetchedAtMillis),
            RedisArgument(record.mac), RedisArgument(keys.keySetChannel), RedisArgument(KeySetAnnouncement(version: record.version, issuer: issuer).wireText),
        ])
        return record
    }

    /// KEYS: the issuer's key-set record, the set of issuers. ARGV: issuer, jwks, version, serial,
    /// fetched ms, MAC, the announcement's channel and text.
    ///
    /// The record is replaced whole: fields a Redis writer added to it (an `HSET` of 20 junk
    /// fields) made every gateway refuse every later set of the issuer, and — written field by
    /// field — they outlived every publish, so a rotation switched signing to a key no gateway
    /// held (an attacker review). A key of another type in either place is replaced too. The
    /// issuers set is written first: a script stops at a refused command, and one refused after
    /// the record would leave a set stored but never announced.
    static let publishScript = RedisScript("""
    local t = redis.call('TYPE', KEYS[2]).ok
    if t ~= 'set' and t ~= 'none' then redis.call('DEL', KEYS[2]) end
    redis.call('SADD', KEYS[2], ARGV[1])
    redis.call('DEL', KEYS[1])
    redis.call('HSET', KEYS[1], 'issuer', ARGV[1], 'jwks', ARGV[2], 'version', ARGV[3], 'serial', ARGV[4], 'fetched_ms', ARGV[5], 'mac', ARGV[6])
    redis.call('PUBLISH', ARGV[7], ARGV[8])
    return 1
    """)

    /// The stored record for `issuer`, verified (nil when absent or not valid).
    public func record(issuer: String) async throws -> KeySetRecord? {
        guard case .hash(let hash) = try await BoundedHashRead.keySetRecord.read(client, key: keys.keySet(issuer)) else { return nil }
        return try? KeySetRecord.read(hash: hash, issuer: issuer, mac: mac)
    }
}
