#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// The current key set of every issuer, plus the cluster-wide revoked key ids.
///
/// Readers take an immutable ``Snapshot`` and use it for a whole verification, so they never see
/// a half-updated set, and a swap never fails a request in flight. To keep readers on different
/// threads from contending on one lock, the current snapshot is published into several stripes
/// (each behind its own mutex, picked by the reading thread's id); a writer updates every stripe
/// and then bumps ``generation``. An unchanged generation tells the token cache, with one atomic
/// load, that nothing it checked before has changed.
public final class KeySetStore: Sendable {
    /// One issuer's loaded key set.
    public struct Entry: Sendable {
        /// The issuer's keys.
        public let keySet: JWKSet
        /// The version given to `replace` (for a downloaded set, the document's ETag or body hash); nil when none was given.
        public let version: String?
        /// When `replace` installed the set, on the continuous clock.
        public let loadedAt: ContinuousClock.Instant
    }

    /// An immutable view of all key sets and revocations at one moment.
    public final class Snapshot: Sendable {
        /// The store's `generation` for this snapshot; each change adds one.
        public let generation: UInt64
        /// Loaded key sets, by issuer name.
        public let entries: [String: Entry]
        /// kid → the issuers (`iss`, or `*` for every issuer) it is revoked for.
        public let revokedKeys: [ExactKey: Set<ExactKey>]

        init(generation: UInt64, entries: [String: Entry], revokedKeys: [ExactKey: Set<ExactKey>]) {
            self.generation = generation
            self.entries = entries
            self.revokedKeys = revokedKeys
        }

        /// True when `kid` is revoked for tokens of `issuer` (its `iss`).
        public func isRevoked(kid: String, issuer: String) -> Bool {
            guard let scopes = revokedKeys[ExactKey(kid)] else { return false }
            return scopes.contains("*") || scopes.contains(ExactKey(issuer))
        }

        /// The key set of `issuerName`, if loaded.
        public func keySet(issuerName: String) -> JWKSet? { entries[issuerName]?.keySet }

        /// Whether the key that verified `token` is still trusted: its issuer's set holds it (by
        /// `kid` and fingerprint, or for a token without `kid`, the set's only key, as the verifier
        /// chose it) and its `kid` is not revoked; nil when the issuer's set is not loaded. Asked
        /// of open sessions (a key a reload removed ends the streams its tokens opened).
        public func stillTrusts(_ token: VerifiedToken) -> Bool? {
            if let kid = token.keyID, isRevoked(kid: kid, issuer: token.issuer) { return false }
            guard let set = entries[token.issuerName]?.keySet else { return nil }
            let candidates = token.keyID.map { set.keysByID[$0] ?? [] } ?? (set.count == 1 ? set.allKeys : [])
            guard let fingerprint = token.keyFingerprint else { return candidates.contains { $0.algorithm == token.algorithm } || token.keyID == nil }
            guard let key = candidates.first(where: { $0.fingerprint == fingerprint }) else { return false }
            // The key's own kid, which a token without one does not name.
            if let kid = key.keyID, isRevoked(kid: kid, issuer: token.issuer) { return false }
            return true
        }

        /// True when `key` is still in `issuerName`'s set (same kid, algorithm and key material)
        /// and its kid is not revoked; for a token without `kid`, also that the set still holds
        /// exactly one key (the rule that selected it).
        func stillTrusts(_ key: VerificationKey, issuerName: String, issuer: String, tokenHasKeyID: Bool) -> Bool {
            if let kid = key.keyID, isRevoked(kid: kid, issuer: issuer) { return false }
            guard let set = entries[issuerName]?.keySet else { return false }
            if !tokenHasKeyID, set.count != 1 { return false }
            let candidates = key.keyID.map { set.keysByID[$0] ?? [] } ?? set.keysWithoutID
            return candidates.contains { $0 === key || $0.fingerprint == key.fingerprint }
        }
    }

    private final class Stripe: Sendable {
        let current: Mutex<Snapshot>
        init(_ snapshot: Snapshot) { current = Mutex(snapshot) }
    }

    private struct WriterState {
        var latest: Snapshot
        var expectedIssuers: Set<String> = []
        var epoch: UInt64 = 0
    }

    private static let stripeCount = 16
    private let stripes: [Stripe]
    private let observers = Mutex<[@Sendable (KeySetStore) -> Void]>([])
    private let writer: Mutex<WriterState>
    private let generationCounter = Atomic<UInt64>(0)

    /// An empty store: no key sets, no revoked keys, generation 0.
    public init() {
        let empty = Snapshot(generation: 0, entries: [:], revokedKeys: [:])
        stripes = (0..<Self.stripeCount).map { _ in Stripe(empty) }
        writer = Mutex(WriterState(latest: empty))
    }

    // MARK: Reading

    /// The current snapshot; cheap (one uncontended lock and a retain).
    public func snapshot() -> Snapshot {
        stripes[Self.stripeIndex()].current.withLock { $0 }
    }

    /// Bumped after every change, once all stripes show it.
    public var generation: UInt64 { generationCounter.load(ordering: .acquiring) }

    /// The key set of `issuerName` in the current snapshot; nil if not loaded.
    public func keySet(issuerName: String) -> JWKSet? { snapshot().entries[issuerName]?.keySet }
    /// The version of `issuerName`'s set in the current snapshot; nil if not loaded or none was given.
    public func version(issuerName: String) -> String? { snapshot().entries[issuerName]?.version }
    /// When `issuerName`'s current set was installed; nil if not loaded.
    public func loadedAt(issuerName: String) -> ContinuousClock.Instant? { snapshot().entries[issuerName]?.loadedAt }
    /// kid → the issuers (`iss`, or `*` for every issuer) it is revoked for, in the current snapshot.
    public var revokedKeys: [ExactKey: Set<ExactKey>] { snapshot().revokedKeys }

    /// True when every issuer registered with ``expectIssuers(_:)`` has a key set loaded (for `/readyz`).
    public var isReady: Bool {
        let expected = writer.withLock { $0.expectedIssuers }
        let loaded = snapshot().entries
        return expected.allSatisfy { loaded[$0] != nil }
    }

    /// Adds issuers that must have keys before ``isReady`` is true. `JWTVerifier` and
    /// `KeySetLoader` register their issuers themselves.
    public func expectIssuers(_ names: some Sequence<String>) {
        writer.withLock { $0.expectedIssuers.formUnion(names) }
    }

    /// Makes exactly `names` the issuers ``isReady`` waits for: a reloaded configuration's, so
    /// that an issuer it removed (whose keys may never load) no longer holds readiness back.
    public func expectOnlyIssuers(_ names: some Sequence<String>) {
        writer.withLock { $0.expectedIssuers = Set(names) }
    }

    /// Calls `observer` with the store after every change, on the writer's thread, outside the
    /// store's locks (it should hand work off and return; reading ``snapshot()`` there sees the
    /// change or a later one).
    public func onChange(_ observer: @escaping @Sendable (KeySetStore) -> Void) {
        observers.withLock { $0.append(observer) }
    }

    // MARK: Writing

    /// The configuration generation whose key-set loader may write (``beginEpoch()``).
    public var epoch: UInt64 { writer.withLock { $0.epoch } }

    /// Starts a new configuration's epoch (a reload): from now on, writes made for an earlier one
    /// change nothing. A loader of the replaced configuration may have a fetch in flight — an
    /// unknown `kid`'s, or a scheduled one — whose answer would otherwise put the old source's keys
    /// back over the new configuration's: a key the operator had just retired would be accepted
    /// again, and the new one refused, until the next reload.
    public func beginEpoch() -> UInt64 {
        writer.withLock { state in
            state.epoch += 1
            return state.epoch
        }
    }

    /// Atomically replaces `issuerName`'s key set.
    public func replace(issuerName: String, keySet: JWKSet, version: String?) {
        update { entries, _ in
            entries[issuerName] = Entry(keySet: keySet, version: version, loadedAt: .now)
        }
    }

    /// Replaces `issuerName`'s key set for the configuration of `epoch`; nothing changes (and
    /// false is returned) when a later configuration is in force.
    @discardableResult
    public func replace(issuerName: String, keySet: JWKSet, version: String?, epoch: UInt64) -> Bool {
        update(epoch: epoch) { entries, _ in
            entries[issuerName] = Entry(keySet: keySet, version: version, loadedAt: .now)
        }
    }

    /// Drops `issuerName`'s key set (its tokens then fail with `keys_not_loaded`).
    public func remove(issuerName: String) {
        update { entries, _ in entries[issuerName] = nil }
    }

    /// Drops `issuerName`'s key set for the configuration of `epoch`, unless a later one is in force.
    @discardableResult
    public func remove(issuerName: String, epoch: UInt64) -> Bool {
        update(epoch: epoch) { entries, _ in entries[issuerName] = nil }
    }

    /// Keys revoked cluster-wide: kid → the issuers (`iss`, `*` for all) whose tokens it may no
    /// longer verify, even while a JWKS still lists it. Replaces the whole map.
    public func setRevokedKeys(_ keys: [ExactKey: Set<ExactKey>]) {
        update { _, revoked in revoked = keys }
    }

    @discardableResult
    private func update(epoch: UInt64? = nil, _ change: (inout [String: Entry], inout [ExactKey: Set<ExactKey>]) -> Void) -> Bool {
        let changed = writer.withLock { state in
            if let epoch, epoch != state.epoch { return false }
            var entries = state.latest.entries
            var revoked = state.latest.revokedKeys
            change(&entries, &revoked)
            let next = Snapshot(generation: state.latest.generation + 1, entries: entries, revokedKeys: revoked)
            state.latest = next
            for stripe in stripes { stripe.current.withLock { $0 = next } }
            generationCounter.store(next.generation, ordering: .releasing)
            return true
        }
        if changed {
            for observer in observers.withLock({ $0 }) { observer(self) }
        }
        return changed
    }

    @inline(__always)
    private static func stripeIndex() -> Int {
        // pthread_t is the address of the thread's control block: distinct per live thread.
        #if canImport(Darwin)
        let id = UInt64(UInt(bitPattern: pthread_self()))
        #else
        let id = UInt64(pthread_self())
        #endif
        return Int(truncatingIfNeeded: (id &* 0x9E37_79B9_7F4A_7C15) >> 60) & (stripeCount - 1)
    }
}
