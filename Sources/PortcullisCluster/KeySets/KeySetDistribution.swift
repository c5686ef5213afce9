import Crypto
import Foundation
import Logging
import Metrics
import PortcullisJOSE
import PortcullisRedis

/// An issuer's key set as the control plane stores it in Redis (HASH `keys:set:<issuer>`).
/// The MAC under the cluster secret is what stops a Redis writer from injecting a signing key;
/// the signed issuer must equal the slot it is read from, and the signed `serial` only grows per
/// issuer, so a valid record can neither be moved to another issuer nor rolled back.
public struct KeySetRecord: Sendable, Equatable {
    /// The issuer's `iss`.
    public var issuer: String
    /// The JWKS document, as fetched.
    public var jwks: String
    /// Hex SHA-256 of `jwks` (first 16 digits): changes exactly when the set changes.
    public var version: String
    /// Grows with every publication for the issuer (nodes refuse a lower one).
    public var serial: Int64
    public var fetchedAtMillis: Int64
    public var mac: String

    public init(issuer: String, jwks: String, serial: Int64, fetchedAtMillis: Int64, mac: ClusterMAC) {
        self.issuer = issuer
        self.jwks = jwks
        self.version = Self.version(of: jwks)
        self.serial = serial
        self.fetchedAtMillis = fetchedAtMillis
        self.mac = ""
        self.mac = mac.sign(macFields)
    }

    static func version(of jwks: String) -> String {
        SHA256.hash(data: Array(jwks.utf8)).prefix(8).map { String(format: "%02x", $0) }.joined()
    }

    var macFields: [String] { ["ks2", issuer, version, jwks, String(serial), String(fetchedAtMillis)] }

    init?(hash: [RedisValue]) {
        let map = hash.hashFields()
        guard let issuer = map["issuer"], let jwks = map["jwks"], let version = map["version"],
              let serial = map["serial"].flatMap({ Int64($0) }), let fetched = map["fetched_ms"].flatMap({ Int64($0) }),
              let mac = map["mac"] else { return nil }
        self.issuer = issuer
        self.jwks = jwks
        self.version = version
        self.serial = serial
        self.fetchedAtMillis = fetched
        self.mac = mac
    }

    /// Why a stored record was not accepted.
    enum RecordError: Error, CustomStringConvertible {
        case malformed
        case badMAC
        case wrongSlot(signedIssuer: String)

        var description: String {
            switch self {
            case .malformed: "malformed key-set record"
            case .badMAC: "key-set record MAC does not verify: not written by a holder of the cluster secret"
            case .wrongSlot(let signed): "key-set record signed for issuer '\(signed)' found in another issuer's slot"
            }
        }
    }

    /// Reads and authenticates the record stored for `issuer`.
    static func read(hash: [RedisValue], issuer: String, mac: ClusterMAC) throws(RecordError) -> KeySetRecord {
        guard let record = KeySetRecord(hash: hash) else { throw .malformed }
        guard record.version == Self.version(of: record.jwks), mac.verify(record.mac, record.macFields) else { throw .badMAC }
        guard record.issuer == issuer else { throw .wrongSlot(signedIssuer: record.issuer) }
        return record
    }
}

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
        let hash = try await client.send("HGETALL", RedisArgument(keys.keySet(issuer))).array ?? []
        return try? KeySetRecord.read(hash: hash, issuer: issuer, mac: mac)
    }
}

/// A node's side: applies key-set records from Redis to its `KeySetStore`, atomically per issuer,
/// and only when the MAC verifies. Issuers are matched by `iss`; only issuers whose config says
/// their keys come from the cluster (no `jwks_file`) take cluster records.
actor KeySetSubscriber {
    private let client: RedisClient
    private let keys: ClusterKeys
    private let mac: ClusterMAC
    private let alarm: TamperingAlarm
    private let store: KeySetStore
    private let issuersByIss: [String: [IssuerConfig]]
    private let logger: Logger
    private let rejected = Counter(label: "portcullis_keyset_events_rejected_total", dimensions: [("kind", "keyset")])
    private var lastRefetch: [String: ContinuousClock.Instant] = [:]
    /// The highest serial applied per `iss`: a lower one is a rollback.
    private var serials: [String: Int64] = [:]

    init(client: RedisClient, keys: ClusterKeys, mac: ClusterMAC, alarm: TamperingAlarm, store: KeySetStore, issuers: [IssuerConfig], logger: Logger) {
        self.client = client
        self.keys = keys
        self.mac = mac
        self.alarm = alarm
        self.store = store
        self.issuersByIss = Dictionary(grouping: issuers.filter { issuer in
            if case .jwksFile = issuer.keySource { return false }
            return true
        }, by: \.issuer)
        self.logger = logger
    }

    /// Loads every record for the issuers we serve (start-up and after a reconnect).
    func loadAll() async throws {
        for iss in issuersByIss.keys {
            try await load(iss: iss)
        }
    }

    /// A `keys:events` message.
    func receive(_ message: [UInt8]) async {
        guard let announcement = KeySetAnnouncement(message), issuersByIss[announcement.issuer] != nil else { return }
        let iss = announcement.issuer
        do {
            try await load(iss: iss)
        } catch {
            logger.warning("could not load key set from Redis", metadata: ["issuer": "\(iss)", "error": "\(error)"])
        }
    }

    private func load(iss: String) async throws {
        let hash = try await client.send("HGETALL", RedisArgument(keys.keySet(iss))).array ?? []
        guard !hash.isEmpty else { return }
        let record: KeySetRecord
        do {
            record = try KeySetRecord.read(hash: hash, issuer: iss, mac: mac)
        } catch {
            rejected.increment()
            alarm.report(key: keys.keySet(iss), "ignoring a key-set record: \(error)")
            return
        }
        if let held = serials[iss] {
            if record.serial < held {
                rejected.increment()
                alarm.report(key: keys.keySet(iss), "ignoring a key-set record rolled back to serial \(record.serial) (this node holds \(held))")
                return
            }
            if record.serial == held { return }
        }
        serials[iss] = record.serial
        for issuer in issuersByIss[iss] ?? [] {
            if store.version(issuerName: issuer.name) == record.version { continue }
            do {
                let set = try JWKSet.parse(Array(record.jwks.utf8), issuer: issuer, logger: logger)
                store.replace(issuerName: issuer.name, keySet: set, version: record.version)
                logger.info("key set updated from the cluster", metadata: ["issuer": "\(issuer.name)", "version": "\(record.version)"])
            } catch {
                logger.error("key-set record does not parse; keeping the previous set", metadata: ["issuer": "\(issuer.name)", "error": "\(error)"])
            }
        }
    }

    /// Asks the control plane to refetch an issuer's JWKS after an unknown kid, at most once per
    /// `throttle` per issuer from this node (the control plane throttles cluster-wide too).
    func requestRefetch(issuerName: String, kid: String, throttle: Duration) async {
        guard let issuer = issuersByIss.values.joined().first(where: { $0.name == issuerName }) else { return }
        let now = ContinuousClock.now
        if let last = lastRefetch[issuer.issuer], now - last < throttle { return }
        lastRefetch[issuer.issuer] = now
        _ = try? await client.send("PUBLISH", RedisArgument(keys.keySetRefetchChannel),
                                   RedisArgument(KeyRefetchRequest(kid: kid, issuer: issuer.issuer).wireText))
    }
}
