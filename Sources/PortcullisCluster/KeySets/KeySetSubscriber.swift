import Logging
import Metrics
import PortcullisJOSE
import PortcullisRedis

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
