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
        _ = try await client.pipeline([
            ["HSET", RedisArgument(keys.keySet(issuer)), "issuer", RedisArgument(issuer), "jwks", RedisArgument(jwks),
             "version", RedisArgument(record.version), "serial", RedisArgument(record.serial), "fetched_ms", RedisArgument(fetchedAtMillis),
             "mac", RedisArgument(record.mac)],
            ["SADD", RedisArgument(keys.keySetIssuers), RedisArgument(issuer)],
            ["PUBLISH", RedisArgument(keys.keySetChannel), RedisArgument(KeySetAnnouncement(version: record.version, issuer: issuer).wireText)],
        ]).forEach { _ = try $0.get() }
        return record
    }

    /// The stored record for `issuer`, verified (nil when absent or not valid).
    public func record(issuer: String) async throws -> KeySetRecord? {
        guard case .hash(let hash) = try await BoundedHashRead.keySetRecord.read(client, key: keys.keySet(issuer)) else { return nil }
        return try? KeySetRecord.read(hash: hash, issuer: issuer, mac: mac)
    }
}
