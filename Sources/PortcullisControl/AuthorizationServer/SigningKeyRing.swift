import Foundation
import Logging
import PortcullisCluster
import PortcullisJOSE
import PortcullisRedis

/// The built-in issuer's signing keys: kept in Redis (sealed under the key-encryption key) so
/// every control plane signs with the same key, published to the cluster as the issuer's JWKS,
/// and rotated without a failed request:
///
/// 1. a new key is added as `pending` and the JWKS (old and new keys) is published;
/// 2. the rotation waits until no live gateway still reports the previous key-set version in its
///    node record (or `rotation_propagation_timeout` passes, logged);
/// 3. the new key becomes `active` and the old one `retiring`, in one write;
/// 4. the retiring key stays in the JWKS until its last token has expired (access-token TTL plus
///    a margin for clock skew), then leaves it.
///
/// Rotations, retirements and clean-up run under a cluster lock, so two control planes never
/// rotate at once. Readers use a copy of the ring refreshed every second.
actor SigningKeyRing {
    struct Loaded: Sendable {
        var record: SigningKeyRecord
        var key: SigningKey
    }

    enum RingError: Error, CustomStringConvertible {
        case busy
        case unknownKey(String)
        case activeKey(String)
        case noActiveKey
        case undecryptable([String])
        case unreadable(String)
        case notSynced

        var description: String {
            switch self {
            case .busy: "another rotation or retirement is running; try again shortly"
            case .unknownKey(let kid): "no signing key '\(kid)'"
            case .activeKey(let kid): "'\(kid)' is the active signing key; rotate first, then retire it"
            case .noActiveKey: "the authorization server has no active signing key yet"
            case .notSynced:
                "the revocation list is not synced yet: no key signs or is published until it is (a revoked key's record would pass)"
            case .unreadable(let key):
                "the signing keys' hash \(key) holds more fields than any ring (a Redis writer's): not read"
            case .undecryptable(let kids):
                "signing keys \(kids.joined(separator: ", ")) in Redis cannot be opened with this key_encryption_key_file (another control plane sealed them with a different key: copy its file here)"
            }
        }
    }

    /// What a retirement did.
    struct Retirement: Sendable {
        /// The key's record as this control plane last read it; nil when the key was already
        /// revoked and its record gone (a retry).
        var record: SigningKeyRecord?
        /// The key revocation written; nil when the key was already revoked.
        var revocationID: String?
        /// Why the record's deletion or the JWKS's publish failed, when one did: the gateways
        /// refuse the key's tokens all the same (its revocation), and `maintain` finishes it.
        var publishError: String?
        /// Whether the JWKS without the key was published.
        var published: Bool { publishError == nil }
    }

    /// What a rotation did.
    struct RotationResult: Sendable {
        var newKeyID: String
        var previousKeyID: String?
        var version: String
        /// Gateways that still had the previous key set when signing switched (empty when all
        /// caught up within the timeout).
        var laggards: [String]
        var waitedMillis: Int64
    }

    let config: AuthorizationServerConfig
    private let client: RedisClient
    private let keys: ClusterKeys
    private let kek: KeyEncryptionKey
    private let publisher: KeySetPublisher
    private let membership: Membership
    private let mac: ClusterMAC
    private let alarm: TamperingAlarm
    /// The highest revision seen per kid (`Int64.max` once retired): an older one is a rollback.
    private var revisions: [String: Int64] = [:]
    private let verificationKeys: KeySetStore
    private let lock: ClusterLock
    private let metrics: ControlMetrics
    private let logger: Logger
    private var ring: [String: Loaded] = [:]
    /// The active record of the last ring read with one: kept, as retiring, by the rotation
    /// `maintain` makes when Redis has no active record.
    private var lastActive: SigningKeyRecord?
    /// Kids of records the last reload left out — an `active` one beside a later activated one
    /// (put back by a Redis writer), or any of a revoked key — deleted by `maintain`.
    private var staleRecords: [String] = []
    /// A publish of this control plane's failed since its last one that succeeded: `maintain`
    /// publishes again. Its own failure only: another control plane's ring may differ (a record
    /// one of them refused), and publishing whenever the stored JWKS is not this ring's had two
    /// control planes overwrite each other every 2 s.
    private var publishFailed = false
    /// Whether the cluster's signed revocation list revokes a kid of this issuer (`kind: key`).
    private let isKeyRevoked: @Sendable (String) -> Bool
    /// Whether this control plane's copy of the revocation list has synced. Before it has,
    /// `isKeyRevoked` knows nothing: a control plane restarted with a retired key's record put
    /// back (and the head garbled, so that the sync waits) would sign every token with that key
    /// and publish it. Nothing signs, is published or changed until then.
    private let isListSynced: @Sendable () -> Bool
    /// The last read refused the hash (more fields than any ring): the ring is the one read
    /// before, held to the revocation list and the clock again at each read (`settle`), and no
    /// rotation or retirement runs until a read succeeds again.
    private var readRefused = false
    /// Writes a key revocation of this issuer's `kid` to the signed revocation list, durably (as
    /// `POST /v1/revocations` does, `required_replicas` included), for `actor`, and answers its id:
    /// what a retirement stands on.
    private let revokeKey: @Sendable (_ kid: String, _ actor: String) async throws -> String
    /// When `maintain` last replaced a lost active key: at most one such rotation per
    /// `replacementSpacing`, so a Redis writer who deletes the active record again and again
    /// cannot pile keys into the published set.
    private var lastReplacement: ContinuousClock.Instant?
    static let replacementSpacing: Duration = .seconds(30)
    private var loadedAt: ContinuousClock.Instant?
    private var jwks: String = "{\"keys\":[]}"
    /// Margin past the access-token lifetime before a retiring key leaves the JWKS (clock skew,
    /// gateway leeway).
    static let retireMargin: Duration = .seconds(120)

    init(config: AuthorizationServerConfig, client: RedisClient, keys: ClusterKeys, kek: KeyEncryptionKey,
         publisher: KeySetPublisher, membership: Membership, mac: ClusterMAC, alarm: TamperingAlarm, verificationKeys: KeySetStore,
         metrics: ControlMetrics, logger: Logger, isKeyRevoked: @escaping @Sendable (String) -> Bool,
         isListSynced: @escaping @Sendable () -> Bool,
         revokeKey: @escaping @Sendable (_ kid: String, _ actor: String) async throws -> String) {
        self.isKeyRevoked = isKeyRevoked
        self.isListSynced = isListSynced
        self.revokeKey = revokeKey
        self.config = config
        self.client = client
        self.keys = keys
        self.kek = kek
        self.publisher = publisher
        self.membership = membership
        self.mac = mac
        self.alarm = alarm
        self.verificationKeys = verificationKeys
        self.lock = ClusterLock(client: client, keys: keys, task: "as-keys", longest: config.rotationPropagationTimeout + .seconds(30), alarm: alarm)
        self.metrics = metrics
        self.logger = logger
    }

    // MARK: Reading

    /// The signer for new tokens (the ring is re-read when older than a second).
    func activeSigner() async throws -> JWTSigner {
        guard isListSynced() else { throw RingError.notSynced }
        try await refreshIfOld()
        guard let active = ring.values.first(where: { $0.record.state == .active }) else { throw RingError.noActiveKey }  // one at most: `reload`
        return JWTSigner(key: active.key, keyID: active.record.kid)
    }

    /// The JWKS document: every key in the ring, oldest first.
    func document() async throws -> String {
        guard isListSynced() else { throw RingError.notSynced }
        try await refreshIfOld()
        return jwks
    }

    func records() async throws -> [SigningKeyRecord] {
        try await refreshIfOld()
        return ring.values.map(\.record).sorted { $0.createdMillis < $1.createdMillis }
    }

    private func refreshIfOld() async throws {
        if let loadedAt, ContinuousClock.now - loadedAt < .seconds(1) { return }
        try await reload()
    }

    /// The most records the ring's hash may hold to be read (a rotation keeps two or three).
    static let maxRecords = 64
    /// The longest field (kid) read: this server's kids are about 20 bytes.
    static let maxKidBytes = 128

    /// Whether a field cannot be a record of this server (Lua, for the scripts below): a name
    /// that is not a kid (`as-<seconds>-<hex>`, as `makeKey` makes them) or longer than
    /// `maxKidBytes`, or a value longer than any record. ARGV[2], ARGV[3]: those limits.
    private static let junkField = """
    local function junk(field)
      return #field > tonumber(ARGV[2]) or not string.match(field, '^as%-%d+%-%x+$')
        or redis.call('HSTRLEN', KEYS[1], field) > tonumber(ARGV[3])
    end
    """

    /// KEYS: the ring's hash. ARGV: the most fields, the longest kid, the longest record.
    /// Read-only (so it runs while Redis pauses writes, as in a failover): `{junk, 1, {fields…}}`
    /// — `{n, 1, {}}` when `n` fields are junk (`junkField`), which `deleteJunk` removes first —
    /// or `{0, 0, count}` with more fields than any ring. Read whole with `HGETALL` every second,
    /// large junk fields would cost the control plane memory in proportion at every read, and
    /// slow its token endpoint with it.
    static let readScript = RedisScript(junkField + "\n" + """
    local bad = 0
    for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
      if junk(field) then bad = bad + 1 end
    end
    if bad > 0 then return {bad, 1, {}} end
    local count = redis.call('HLEN', KEYS[1])
    if count > tonumber(ARGV[1]) then return {0, 0, count} end
    return {0, 1, redis.call('HGETALL', KEYS[1])}
    """)

    /// KEYS: the ring's hash. ARGV: unused, the longest kid, the longest record. Deletes the
    /// junk fields unread; answers how many.
    static let deleteJunkScript = RedisScript(junkField + "\n" + """
    local removed = 0
    for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
      if junk(field) then
        redis.call('HDEL', KEYS[1], field)
        removed = removed + 1
      end
    end
    return removed
    """)

    /// Re-reads the ring from Redis and updates the local verification keys.
    func reload() async throws {
        let key = [RedisArgument(keys.authorizationServerKeys)]
        let limits = [RedisArgument(Self.maxRecords), RedisArgument(Self.maxKidBytes), RedisArgument(SigningKeyRecord.maxBytes)]
        var reply = try await client.evalScript(Self.readScript, keys: key, arguments: limits, readOnly: true).array ?? []
        if let junk = reply.first?.int, junk > 0 {
            let removed = try await client.evalScript(Self.deleteJunkScript, keys: key, arguments: limits).int ?? 0
            alarm.report(key: keys.authorizationServerKeys, "\(removed) fields that cannot be signing-key records (not a kid, or longer than any record): deleted unread")
            reply = try await client.evalScript(Self.readScript, keys: key, arguments: limits, readOnly: true).array ?? []
        }
        guard reply.count == 3, reply[0].int == 0, let readable = reply[1].int else {
            throw RingError.unreadable(keys.authorizationServerKeys)
        }
        guard readable == 1 else {
            alarm.report(key: keys.authorizationServerKeys, "\(reply[2].int ?? 0) signing-key fields, more than any ring holds (\(Self.maxRecords)): not read; the ring stays as it was, and no rotation or retirement runs until they are deleted")
            readRefused = true
            guard loadedAt != nil else { throw RingError.unreadable(keys.authorizationServerKeys) }
            // The ring as last read, held to the revocation list and the clock again: a key
            // revoked since, or past its retirement time, leaves what signs and is published.
            settle(ring)
            return
        }
        readRefused = false
        let flat = reply[2].array ?? []
        var next: [String: Loaded] = [:]
        var undecryptable: [String] = []
        for (field, text) in flat.hashFields() {
            guard let record = SigningKeyRecord(json: text, field: field, mac: mac) else {
                alarm.report(key: keys.authorizationServerKeys, "signing-key record '\(field)' does not verify (not written by a holder of the cluster secret, or moved from another kid)")
                if let kept = ring[field], revisions[field] != .max { next[field] = kept }
                continue
            }
            if let highest = revisions[record.kid], record.revision < highest {
                alarm.report(key: keys.authorizationServerKeys, "signing-key record '\(record.kid)' rolled back to revision \(record.revision) (this control plane saw \(highest == .max ? "it retired" : String(highest)))")
                if let kept = ring[record.kid], highest != .max { next[record.kid] = kept }
                continue
            }
            revisions[record.kid] = record.revision
            if let existing = ring[record.kid], existing.record.sealed == record.sealed {
                next[record.kid] = Loaded(record: record, key: existing.key)
                continue
            }
            guard let plaintext = kek.unseal(record.sealed, context: record.sealContext),
                  let key = try? SigningKey(exported: plaintext) else {
                undecryptable.append(record.kid)
                continue
            }
            next[record.kid] = Loaded(record: record, key: key)
        }
        if !undecryptable.isEmpty {
            logger.error("cannot open signing keys from Redis", metadata: ["error": "\(RingError.undecryptable(undecryptable))"])
            if next.values.contains(where: { $0.record.state == .active }) == false, !flat.isEmpty {
                throw RingError.undecryptable(undecryptable)
            }
        }
        // A rotation switches the active key and the one before it in one write, so two active
        // records never follow from it: all but the latest activated are a Redis writer putting
        // back a key's older signed record — after a restart, when `revisions` remembers nothing,
        // the only sign of it.
        // A key the revocation list revokes (a retired one among them) never signs nor is
        // published again, whatever its record says: an operator who revokes the active key gets
        // a new one within seconds (`maintain`), and a revoked key's record put back by a Redis
        // writer — on any control plane, after a restart too, when `revisions` remembers
        // nothing — is left out. An older active record is reported, revoked or not (`maintain`
        // deletes a revoked active record before it replaces the key, so none is left beside
        // its replacement).
        settle(next)
    }

    /// Takes `records` as the ring, less what may not sign or be published (below), and computes
    /// the JWKS.
    private func settle(_ records: [String: Loaded]) {
        var next = records
        let revoked = Set(next.values.filter { isKeyRevoked($0.record.kid) }.map(\.record.kid))
        let actives = next.values.filter { $0.record.state == .active }
            .sorted { ($0.record.activatedMillis ?? $0.record.createdMillis, $0.record.revision) > ($1.record.activatedMillis ?? $1.record.createdMillis, $1.record.revision) }
        for stale in actives.dropFirst() {
            alarm.report(key: keys.authorizationServerKeys, "signing-key record '\(stale.record.kid)' claims to be active beside the later activated '\(actives[0].record.kid)' (an older record put back); left out")
        }
        staleRecords = Array(revoked.union(actives.dropFirst().map(\.record.kid))).sorted()
        for kid in staleRecords { next[kid] = nil }
        ring = next
        if let active = next.values.first(where: { $0.record.state == .active }) { lastActive = active.record }
        loadedAt = .now
        // Published: the keys that may verify tokens now. A retiring key past its signed
        // `retireAfterMillis` or a pending key a rotation abandoned leaves the JWKS at once, even
        // before `maintain` deletes its record (or when a Redis writer put such a record back).
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let ordered = next.values.filter { Self.publishable($0.record, now: now, abandonedBefore: now - Self.pendingLifetime(config).wholeMilliseconds) }
            .sorted { $0.record.createdMillis < $1.record.createdMillis }
        jwks = JSONWriter.serialize(["keys": .array(ordered.map { $0.key.publicJWK(keyID: $0.record.kid) })])
        if let set = try? JWKSet.parse(Array(jwks.utf8), issuer: config.issuerConfig, logger: nil) {
            verificationKeys.replace(issuerName: config.name, keySet: set, version: nil)
        }
    }

    // MARK: Changing

    /// At start-up: makes sure there is an active key (creating the first one) and that the
    /// published key set matches the ring.
    func start() async throws {
        guard isListSynced() else { throw RingError.notSynced }
        try await reload()
        if ring.values.contains(where: { $0.record.state == .active }) {
            try await publish()
            return
        }
        for _ in 0..<50 {
            let done = try await locked(ttl: .seconds(30)) {
                try await reload()
                if !ring.values.contains(where: { $0.record.state == .active }) {
                    let key = try makeKey(state: .active)
                    try await store([key])
                    logger.info("created the authorization server's first signing key", metadata: ["kid": "\(key.kid)"])
                }
                try await reload()
                try await publish()
                return true
            }
            if done == true { return }
            // Another control plane is creating it.
            try await Task.sleep(for: .milliseconds(100))
            try await reload()
            if ring.values.contains(where: { $0.record.state == .active }) { return }
        }
        throw RingError.busy
    }

    /// Rotates the signing key (see the type's description).
    func rotate(trigger: String) async throws -> RotationResult {
        guard let result = try await locked(ttl: config.rotationPropagationTimeout + .seconds(30), { try await rotateLocked(trigger: trigger) }) else {
            throw RingError.busy
        }
        return result
    }

    /// `previous`: the key the new one replaces (default: the ring's active key).
    private func rotateLocked(trigger: String, previous replaced: SigningKeyRecord? = nil) async throws -> RotationResult {
        try await reloadForChange()
        let previous = replaced ?? ring.values.first { $0.record.state == .active }?.record
        let previousVersion = try await publisher.record(issuer: config.issuer)?.version

        var pending = try makeKey(state: .pending)
        // A previous key Redis no longer holds (lost with its data, or deleted) goes back as
        // retiring with the new one, so the first set published with the new key still verifies
        // what the previous one signed.
        let retire = { (record: SigningKeyRecord, at: Int64) -> SigningKeyRecord in
            var old = record
            old.state = .retiring
            old.deactivatedMillis = at
            old.retireAfterMillis = at + (self.config.accessTokenTTL + Self.retireMargin).wholeMilliseconds
            return old
        }
        let restoredPrevious = previous.flatMap { ring[$0.kid] == nil ? retire($0, Int64(Date().timeIntervalSince1970 * 1000)) : nil }
        try await store([pending] + (restoredPrevious.map { [$0] } ?? []))
        try await reload()
        let record = try await publish()

        // Wait for gateways to hold the new set before it signs anything. With no set read before
        // — Redis lost it, or holds one no reader takes — for every live gateway to report the
        // new one: by the previous version alone, a rotation over a refused record would find no
        // laggard and switch at once to a key no gateway holds.
        let clock = ContinuousClock()
        let started = clock.now
        let waitForAll = previousVersion == nil
        var laggards = try await stillOn(previousVersion, newVersion: record.version, waitForAll: waitForAll)
        while !laggards.isEmpty, clock.now - started < config.rotationPropagationTimeout {
            try await Task.sleep(for: .milliseconds(50))
            laggards = try await stillOn(previousVersion, newVersion: record.version, waitForAll: waitForAll)
        }
        if !laggards.isEmpty {
            logger.warning("rotation: gateways did not report the new key set in time; signing with the new key anyway",
                           metadata: ["laggards": "\(laggards.joined(separator: ","))", "kid": "\(pending.kid)"])
        }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        pending.state = .active
        pending.activatedMillis = now
        var changed = [pending]
        if let previous, restoredPrevious == nil { changed.append(retire(previous, now)) }
        try await store(changed)
        try await reload()
        metrics.signingKeyRotation(trigger: trigger)
        let waited = clock.now - started
        logger.notice("signing key rotated", metadata: [
            "kid": "\(pending.kid)", "previous": "\(previous?.kid ?? "-")", "trigger": "\(trigger)", "version": "\(record.version)",
        ])
        return RotationResult(newKeyID: pending.kid, previousKeyID: previous?.kid, version: record.version, laggards: laggards,
                              waitedMillis: waited.wholeMilliseconds)
    }

    /// Retires a pending or retiring key: the tokens it signed stop verifying, on every node, at
    /// once and for good.
    ///
    /// 1. A key revocation (`kind: key`) of it is written to the signed revocation list, which every
    ///    gateway enforces within milliseconds and no key record in Redis undoes: a record of the
    ///    key put back later (by a Redis writer, a failover, a stale copy) is left out by every
    ///    control plane, restarted ones included (`reload`). A key record alone has no signed
    ///    tombstone to say so. Should this write fail, nothing changed (the caller answers 503).
    /// 2. The key's record is deleted and the JWKS without it published. Should the publish fail
    ///    (Redis refusing writes in a failover), the retirement stands all the same, and
    ///    `maintain` publishes again within seconds.
    ///
    /// Retiring a key already revoked does step 2 again, on any control plane.
    func retire(kid: String, actor: String) async throws -> Retirement {
        let retired = try await locked(ttl: .seconds(30)) { () async throws -> Retirement in
            try await reloadForChange()
            let record = ring[kid]?.record
            if record?.state == .active { throw RingError.activeKey(kid) }
            let alreadyRevoked = isKeyRevoked(kid)
            // An unknown kid writes nothing: a revocation cannot be undone.
            guard record != nil || alreadyRevoked else { throw RingError.unknownKey(kid) }
            let revocationID = alreadyRevoked ? nil : try await revokeKey(kid, actor)
            // The retirement stands from here on: what fails below (Redis refusing writes in a
            // failover) is finished by `maintain` — the record, revoked, is left out and deleted,
            // the JWKS published again — and the answer says so rather than "nothing changed".
            do {
                _ = try await client.send("HDEL", RedisArgument(keys.authorizationServerKeys), RedisArgument(kid))
                revisions[kid] = .max
                try await reload()
                try await publish()
                return Retirement(record: record, revocationID: revocationID)
            } catch {
                publishFailed = true
                logger.warning("a retired key's record or JWKS could not be updated; its revocation stands, will publish again",
                               metadata: ["kid": "\(kid)", "error": "\(error)"])
                return Retirement(record: record, revocationID: revocationID, publishError: "\(error)")
            }
        }
        guard let retired else { throw RingError.busy }
        logger.notice("signing key retired", metadata: ["kid": "\(kid)", "revocation": "\(retired.revocationID ?? "-")"])
        return retired
    }

    /// Periodic chores: the scheduled rotation, removing retiring keys whose tokens have expired,
    /// dropping pending keys a crashed rotation left behind, and publishing the JWKS again after
    /// a publish failed.
    func maintain() async {
        guard isListSynced() else { return }
        do {
            try await reload()
            if readRefused {
                // Only what the ring as last read, filtered again, drops from the published set.
                let dropped = try await locked(ttl: .seconds(30)) { () async throws -> Bool in
                    guard try await publisher.record(issuer: config.issuer)?.jwks != jwks else { return false }
                    try await publish()
                    return true
                }
                if dropped == true { logger.warning("published the signing keys less those revoked or retired since the hash became unreadable") }
                return
            }
            // On its own: a publish that keeps failing must not hold up the other chores.
            do {
                try await republishIfFailed()
            } catch {
                logger.warning("publishing the signing keys again failed; will retry", metadata: ["error": "\(error)"])
            }
            if !staleRecords.isEmpty { try await deleteStaleRecords() }
            if !ring.values.contains(where: { $0.record.state == .active }) { try await replaceLostActiveKey() }
            if let interval = config.rotationInterval, let active = ring.values.first(where: { $0.record.state == .active })?.record {
                let age = Int64(Date().timeIntervalSince1970 * 1000) - (active.activatedMillis ?? active.createdMillis)
                if age >= interval.wholeMilliseconds {
                    _ = try await rotate(trigger: "schedule")
                }
            }
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            let staleCutoff = now - Self.pendingLifetime(config).wholeMilliseconds
            let due = ring.values.map(\.record).filter {
                ($0.state == .retiring && ($0.retireAfterMillis ?? 0) <= now) || ($0.state == .pending && $0.createdMillis < staleCutoff)
            }
            guard !due.isEmpty else { return }
            let removed = try await locked(ttl: .seconds(30)) {
                _ = try await client.send(["HDEL", RedisArgument(keys.authorizationServerKeys)] + due.map { RedisArgument($0.kid) })
                try await reload()
                try await publish()
                return true
            }
            guard removed == true else { return }
            logger.info("signing keys left the JWKS", metadata: ["kids": "\(due.map(\.kid).joined(separator: ","))"])
        } catch RingError.busy {
            return
        } catch {
            logger.warning("signing-key maintenance failed; will retry", metadata: ["error": "\(error)"])
        }
    }

    /// A change whose publish failed after its records were written or deleted (Redis refusing
    /// writes in a failover) leaves the published JWKS behind the ring: a retired key trusted by
    /// every gateway until the next publish. Published again, under the lock, from the ring read
    /// afresh, unless the stored JWKS is already the ring's.
    private func republishIfFailed() async throws {
        guard publishFailed else { return }
        let published = try await locked(ttl: .seconds(30)) { () async throws -> Bool in
            try await reload()
            guard try await publisher.record(issuer: config.issuer)?.jwks != jwks else {
                publishFailed = false
                return false
            }
            try await publish()
            return true
        }
        if published == true { logger.warning("a publish of the signing keys had failed; published again") }
    }

    /// Redis holds no active signing-key record — it restarted without its data, or a writer
    /// deleted the record — so `activeSigner` refuses every token request. The control plane
    /// rotates, as `rotate` does (the new key is published and reaches the gateways before it
    /// signs), and keeps the active key it last read as *retiring*: tokens it signed verify until
    /// they expire, and it signs nothing more. Never as active again: a stale copy (another
    /// control plane rotated or retired it meanwhile) may only verify, for one token lifetime.
    /// A key this control plane retired is not kept at all.
    private func replaceLostActiveKey() async throws {
        if let lastReplacement, ContinuousClock.now - lastReplacement < Self.replacementSpacing { return }
        let replaced = try await locked(ttl: config.rotationPropagationTimeout + .seconds(30)) { () async throws -> RotationResult? in
            try await reload()
            guard !ring.values.contains(where: { $0.record.state == .active }) else { return nil }
            let previous = lastActive.flatMap { record in
                revisions[record.kid] == .max || ring[record.kid] != nil || isKeyRevoked(record.kid) ? nil : record
            }
            return try await rotateLocked(trigger: "restore", previous: previous)
        }
        guard let replaced = replaced ?? nil else { return }
        lastReplacement = .now
        logger.error("Redis held no active signing key (restarted without its data, or the record was deleted); rotated, keeping the last active key as retiring",
                     metadata: ["kid": "\(replaced.newKeyID)", "previous": "\(replaced.previousKeyID ?? "-")"])
    }

    /// Deletes the records `reload` left out: an `active` one beside a later activated one (no
    /// rotation leaves two: an older record a Redis writer put back), or any of a revoked key
    /// (a revoked active key before `maintain` replaces it). Either would otherwise stay, left out
    /// (and the first reported) at every reload, until an operator deleted it.
    private func deleteStaleRecords() async throws {
        let deleted = try await locked(ttl: .seconds(30)) { () async throws -> [String] in
            try await reload()
            let stale = staleRecords
            guard !stale.isEmpty else { return [] }
            _ = try await client.send(["HDEL", RedisArgument(keys.authorizationServerKeys)] + stale.map { RedisArgument($0) })
            try await reload()
            // A revoked key the published set still holds (revoked while retiring) leaves it too.
            if try await publisher.record(issuer: config.issuer)?.jwks != jwks { try await publish() }
            return stale
        }
        guard let deleted, !deleted.isEmpty else { return }
        logger.warning("deleted signing-key records left out (an older active record put back by a Redis writer, or a revoked key)",
                       metadata: ["kids": "\(deleted.joined(separator: ","))"])
    }

    /// How long a pending key may wait for its rotation to finish before it counts as abandoned.
    static func pendingLifetime(_ config: AuthorizationServerConfig) -> Duration {
        config.rotationPropagationTimeout + .seconds(60)
    }

    /// Whether `record`'s key belongs in the published JWKS at `now`.
    static func publishable(_ record: SigningKeyRecord, now: Int64, abandonedBefore: Int64) -> Bool {
        switch record.state {
        case .active: true
        case .retiring: (record.retireAfterMillis ?? .max) > now
        case .pending: record.createdMillis >= abandonedBefore
        }
    }

    /// Publishes the ring's JWKS to the cluster.
    @discardableResult
    func publish() async throws -> KeySetRecord {
        do {
            guard isListSynced() else { throw RingError.notSynced }
            let record = try await publisher.publish(issuer: config.issuer, jwks: jwks)
            publishFailed = false
            return record
        } catch {
            publishFailed = true
            throw error
        }
    }

    // MARK: Helpers

    /// `reload`, for a change to the ring: refused until the revocation list has synced, and
    /// while the hash cannot be read.
    private func reloadForChange() async throws {
        guard isListSynced() else { throw RingError.notSynced }
        try await reload()
        if readRefused { throw RingError.unreadable(keys.authorizationServerKeys) }
    }

    /// Runs `body` holding the ring's cluster lock; nil when another control plane holds it.
    private func locked<T: Sendable>(ttl: Duration, _ body: () async throws -> T) async throws -> T? {
        guard let token = try await lock.acquire(ttl: ttl) else { return nil }
        do {
            let result = try await body()
            await lock.release(token)
            return result
        } catch {
            await lock.release(token)
            throw error
        }
    }

    /// Live gateways that still report `previousVersion` (and not `newVersion`) for some issuer;
    /// with `waitForAll`, every live gateway that does not report `newVersion`. While the node
    /// set cannot be read whole, gateways it hides may lag too: they are named as one laggard, so
    /// the rotation waits its whole `rotationPropagationTimeout` for them.
    private func stillOn(_ previousVersion: String?, newVersion: String, waitForAll: Bool = false) async throws -> [String] {
        if !waitForAll {
            guard let previousVersion, previousVersion != newVersion else { return [] }
        }
        let scan = try await membership.liveNodeScan(role: "gateway")
        let laggards = scan.nodes.filter { node in
            guard !node.leaving else { return false }
            let versions = Set(node.keySetVersions.values)
            return !versions.contains(newVersion) && (waitForAll || previousVersion.map(versions.contains) == true)
        }.map(\.id)
        return scan.complete ? laggards : laggards + ["(gateways a node set too large to read may hide)"]
    }

    private func makeKey(state: SigningKeyRecord.State) throws -> SigningKeyRecord {
        let key = try SigningKey.generate(config.algorithm)
        var generator = SystemRandomNumberGenerator()
        let kid = "as-" + String(Int64(Date().timeIntervalSince1970)) + "-" + Hex.encode((0..<3).map { _ in UInt8.random(in: 0...255, using: &generator) })
        var record = SigningKeyRecord(kid: kid, algorithm: config.algorithm, state: state,
                                      createdMillis: Int64(Date().timeIntervalSince1970 * 1000), sealed: "")
        record.sealed = try kek.seal(key.exportPrivate(), context: record.sealContext)
        if state == .active { record.activatedMillis = record.createdMillis }
        return record
    }

    private func store(_ records: [SigningKeyRecord]) async throws {
        var command: [RedisArgument] = ["HSET", RedisArgument(keys.authorizationServerKeys)]
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        for var record in records {
            // A kid retired here is never written again (its revision is `Int64.max`).
            guard revisions[record.kid] != .max else { throw RingError.unknownKey(record.kid) }
            record.revision = max(now, (revisions[record.kid] ?? 0) + 1, record.revision + 1)
            revisions[record.kid] = record.revision
            command += [RedisArgument(record.kid), RedisArgument(record.json(mac: mac))]
        }
        _ = try await client.send(command)
        loadedAt = nil
    }
}
