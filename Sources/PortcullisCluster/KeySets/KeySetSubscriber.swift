import Logging
import Metrics
import Synchronization
import PortcullisJOSE
import PortcullisRedis

/// A node's side: applies key-set records from Redis to its `KeySetStore`, atomically per issuer,
/// and only when the MAC verifies. Issuers are matched by `iss`; only issuers whose config says
/// their keys come from the cluster (no `jwks_file`) take cluster records. Each record is parsed
/// under the issuer configuration in force (its algorithms, its HMAC secrets added): a reload
/// re-parses the records held (``reconfigure(_:)``).
actor KeySetSubscriber {
    private let client: RedisClient
    private let keys: ClusterKeys
    private let mac: ClusterMAC
    private let alarm: TamperingAlarm
    private let store: KeySetStore
    private var issuersByIss: [String: [IssuerConfig]] {
        didSet { acceptedIssuers.withLock { $0 = Set(issuersByIss.keys) } }
    }
    /// `issuersByIss`'s keys, readable off the actor (`announcedIssuer`).
    private nonisolated let acceptedIssuers = Mutex<Set<String>>([])
    /// The record applied last per `iss`, to parse again under a reloaded configuration.
    private var records: [String: KeySetRecord] = [:]
    private let logger: Logger
    private let rejected = Counter(label: "portcullis_keyset_events_rejected_total", dimensions: [("kind", "keyset")])
    private var lastRefetch: [String: ContinuousClock.Instant] = [:]
    /// The latest read started per `iss` (`load`).
    private var readTickets: [String: Int] = [:]
    /// The highest serial applied per `iss`: a lower one is a rollback.
    private var serials: [String: Int64] = [:]

    init(client: RedisClient, keys: ClusterKeys, mac: ClusterMAC, alarm: TamperingAlarm, store: KeySetStore, issuers: [IssuerConfig], logger: Logger) {
        self.client = client
        self.keys = keys
        self.mac = mac
        self.alarm = alarm
        self.store = store
        let fromCluster = Self.fromCluster(issuers)
        self.issuersByIss = fromCluster
        acceptedIssuers.withLock { $0 = Set(fromCluster.keys) }
        self.logger = logger
        // Until a record comes (or when none ever does), an issuer without a key source has its
        // configured HMAC secrets.
        for issuer in issuersByIss.values.joined()
        where issuer.keySource == .none && !issuer.hmacKeys.isEmpty && store.keySet(issuerName: issuer.name) == nil {
            Self.installConfiguredKeys(of: issuer, in: store)
        }
    }

    private static func fromCluster(_ issuers: [IssuerConfig]) -> [String: [IssuerConfig]] {
        Dictionary(grouping: issuers.filter { issuer in
            if case .jwksFile = issuer.keySource { return false }
            return true
        }, by: \.issuer)
    }

    /// An issuer without a key source and without a record: its HMAC secrets alone, or no set.
    private static func installConfiguredKeys(of issuer: IssuerConfig, in store: KeySetStore) {
        if issuer.hmacKeys.isEmpty {
            store.remove(issuerName: issuer.name)
        } else {
            store.replace(issuerName: issuer.name, keySet: JWKSet.configuredKeys(of: issuer), version: "config")
        }
    }

    /// A reload's issuers (the same ones by name and `iss`: a reload may not change which take
    /// their keys from the cluster): the record held for each is parsed again under its new
    /// settings — algorithms, HMAC secrets — and installed; an issuer without a record gets its
    /// configured HMAC secrets alone, or no set when it has none. Later records are parsed under
    /// these settings too, so that a reload replacing a leaked HMAC secret is not undone by the
    /// next record, and a reload's new algorithm applies.
    func reconfigure(_ issuers: [IssuerConfig]) {
        issuersByIss = Self.fromCluster(issuers)
        for (iss, configs) in issuersByIss {
            for issuer in configs {
                if let record = records[iss] {
                    install(record, for: issuer)
                } else if issuer.keySource == .none {
                    Self.installConfiguredKeys(of: issuer, in: store)
                }
            }
        }
    }

    private func install(_ record: KeySetRecord, for issuer: IssuerConfig) {
        do {
            let set = try JWKSet.parse(Array(record.jwks.utf8), issuer: issuer, logger: logger)
            store.replace(issuerName: issuer.name, keySet: set, version: record.version)
            logger.info("key set updated from the cluster", metadata: ["issuer": "\(issuer.name)", "version": "\(record.version)"])
        } catch {
            logger.error("key-set record does not parse; keeping the previous set", metadata: ["issuer": "\(issuer.name)", "error": "\(error)"])
        }
    }

    /// Loads every record for the issuers we serve (start-up and after a reconnect).
    func loadAll() async throws {
        for iss in issuersByIss.keys {
            try await load(iss: iss)
        }
    }

    /// The issuer a `keys:events` message announces, if this node takes that issuer's keys from
    /// the cluster; read off the actor, so that the subscription's reader hands the load on
    /// (`ClusterAgent`, through a `CoalescingQueue`) without waiting for it.
    nonisolated func announcedIssuer(_ message: [UInt8]) -> String? {
        guard message.count <= 4096, let announcement = KeySetAnnouncement(message),
              acceptedIssuers.withLock({ $0.contains(announcement.issuer) }) else { return nil }
        return announcement.issuer
    }

    /// Loads `iss`'s record from Redis, as announced.
    func announced(_ iss: String) async {
        guard issuersByIss[iss] != nil else { return }
        do {
            try await load(iss: iss)
        } catch {
            logger.warning("could not load key set from Redis", metadata: ["issuer": "\(iss)", "error": "\(error)"])
        }
    }

    private func load(iss: String) async throws {
        // Loads of one issuer may overlap (an announcement's and a resync's, on this actor): a
        // read that finishes after a later one is stale, not a rollback.
        let ticket = (readTickets[iss] ?? 0) + 1
        readTickets[iss] = ticket
        let hash: [RedisValue]
        let read = try await BoundedHashRead.keySetRecord.read(client, key: keys.keySet(iss))
        guard readTickets[iss] == ticket else { return }
        switch read {
        case .hash(let fields): hash = fields
        case .refused(let why):
            rejected.increment()
            alarm.report(key: keys.keySet(iss), "ignoring a key-set record: \(why)")
            return
        }
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
        records[iss] = record
        for issuer in issuersByIss[iss] ?? [] where store.version(issuerName: issuer.name) != record.version {
            install(record, for: issuer)
        }
    }

    /// Asks the control plane to refetch an issuer's JWKS after an unknown kid, at most once per
    /// the issuer's `unknown_kid_throttle` (and at most once a second) from this node (the
    /// control plane throttles cluster-wide too).
    func requestRefetch(issuerName: String, kid: String) async {
        guard let issuer = issuersByIss.values.joined().first(where: { $0.name == issuerName }) else { return }
        let now = ContinuousClock.now
        if let last = lastRefetch[issuer.issuer], now - last < max(issuer.refresh.unknownKeyIDThrottle, .seconds(1)) { return }
        lastRefetch[issuer.issuer] = now
        _ = try? await client.send("PUBLISH", RedisArgument(keys.keySetRefetchChannel),
                                   RedisArgument(KeyRefetchRequest(kid: kid, issuer: issuer.issuer).wireText))
    }
}
