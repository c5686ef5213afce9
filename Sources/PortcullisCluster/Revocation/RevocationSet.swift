import Foundation
import PortcullisJOSE
import Synchronization

/// A node's copy of the cluster's revocations and the one place that decides whether a verified
/// token is revoked. Lookups (every request, cached tokens included) take no lock: the current
/// state comes from `PublishedValue` and the jti and session tables are probed with atomic loads.
///
/// The set only grows, whatever Redis says: a jti leaves it when its token expires, a session
/// when its `until` passes, a cut-off only when a signed delete naming that exact cut-off
/// (`Revocation.lifts`) is applied, a revoked key never. Applying a change twice, or a change
/// already lifted, does nothing.
public final class RevocationSet: RevocationCheck, Sendable {
    /// One subject, client or grant cut-off in force, by the id of the change that set it.
    struct CutoffAdd: Sendable {
        var kind: Revocation.Kind
        var key: ExactKey
        /// Unix milliseconds.
        var cutoffMillis: Int64
        /// Who wrote it (the change's actor).
        var actor: String
    }

    /// Cut-offs and revoked keys: small, replaced as a whole on change.
    struct Cutoffs: Sendable {
        /// `issuer|subject` (issuer `*` for any) → the latest cut-off in force, Unix milliseconds.
        var subjects: [ExactKey: Int64] = [:]
        var clients: [ExactKey: Int64] = [:]
        /// `Revocation.grantKey` (a subject's tokens for one client) → the latest cut-off.
        var grants: [ExactKey: Int64] = [:]
        /// `issuer|kid` → revocation time.
        var keys: [ExactKey: Int64] = [:]
        /// The cut-offs behind `subjects`, `clients` and `grants`, by change id.
        var adds: [String: CutoffAdd] = [:]
        /// Ids of cut-offs a signed delete lifted: never applied again.
        var lifted: Set<String> = []
    }

    final class State: Sendable {
        let tokens: RevokedTokenTable
        /// Revoked sessions, by `RevokedTokenTable.Fingerprint.session(issuer:sid:)`, until their `until`.
        let sessions: RevokedTokenTable
        let cutoffs: Cutoffs
        /// Most clusters have no cut-offs; checking one flag spares copying three dictionaries.
        let hasCutoffs: Bool
        init(tokens: RevokedTokenTable, sessions: RevokedTokenTable, cutoffs: Cutoffs) {
            self.tokens = tokens
            self.sessions = sessions
            self.cutoffs = cutoffs
            hasCutoffs = !(cutoffs.subjects.isEmpty && cutoffs.clients.isEmpty && cutoffs.grants.isEmpty && cutoffs.keys.isEmpty)
        }
    }

    private let state: PublishedValue<State>
    private let staleness: StalenessClock
    private let onKeysChanged: @Sendable (Set<ExactKey>) -> Void
    /// Told after every batch of changes is applied (`onChange`).
    private let changeObservers = Mutex<[@Sendable () -> Void]>([])

    /// - Parameters:
    ///   - staleness: `check` answers `.stale` once the state is older than its limit (if it has one).
    ///   - onKeysChanged: told the revoked kids (as `issuer|kid`, issuer `*` for any) whenever
    ///     they change, to drop those keys from the key sets.
    public init(staleness: StalenessClock = StalenessClock(limit: nil), onKeysChanged: @escaping @Sendable (Set<ExactKey>) -> Void = { _ in }) {
        state = PublishedValue(State(tokens: RevokedTokenTable(expected: 1024), sessions: RevokedTokenTable(expected: 1024), cutoffs: Cutoffs()))
        self.staleness = staleness
        self.onKeysChanged = onKeysChanged
    }

    // MARK: The check

    public func check(_ token: VerifiedToken) -> RevocationVerdict {
        if let age = staleness.exceededAge() {
            return .stale(detail: "revocation state is \(age) s old; refusing authenticated requests until it is confirmed")
        }
        return verdict(token)
    }

    public func revokes(_ token: VerifiedToken) -> Bool {
        if case .revoked = verdict(token) { return true }
        return false
    }

    /// What the list holds about `token`, whatever its age.
    private func verdict(_ token: VerifiedToken) -> RevocationVerdict {
        // The common path captures only the fingerprint: a closure capturing the whole token
        // copied its ten reference-counted fields on every request (seen in profiles).
        let fingerprint = token.jwtID.map(RevokedTokenTable.fingerprint)
        let issuer = token.issuer, sid = token.sessionID
        // One read of the state for the jti, the session (hashed only when a session revocation
        // is in force and the token has a `sid`) and whether cut-offs need a look.
        let (jtiRevoked, sessionRevoked, hasCutoffs) = state.read { current in
            (fingerprint.map { current.tokens.expiry(of: $0) != nil } ?? false,
             current.sessions.count > 0 && sid.map { Self.holds(current.sessions, issuer: issuer, sid: $0) } ?? false,
             current.hasCutoffs)
        }
        if jtiRevoked { return .revoked(detail: "the token has been revoked") }
        if sessionRevoked { return .revoked(detail: "the token's session has been revoked") }
        guard hasCutoffs else { return .allowed }
        return Self.checkCutoffs(token, state.value.cutoffs)
    }

    private static func checkCutoffs(_ token: VerifiedToken, _ cutoffs: Cutoffs) -> RevocationVerdict {
        // An issuer's own cut-off and the any-issuer one both apply: the later wins.
        if !cutoffs.subjects.isEmpty, let subject = token.subject,
           let cutoff = Self.later(cutoffs.subjects[ExactKey(token.issuer + "|" + subject)], cutoffs.subjects[ExactKey("*|" + subject)]),
           Self.issuedBefore(token, cutoff) {
            return .revoked(detail: "tokens of this subject issued before \(Self.describe(cutoff)) have been revoked")
        }
        if !cutoffs.clients.isEmpty, let client = token.clientID,
           let cutoff = Self.later(cutoffs.clients[ExactKey(token.issuer + "|" + client)], cutoffs.clients[ExactKey("*|" + client)]),
           Self.issuedBefore(token, cutoff) {
            return .revoked(detail: "tokens of this client issued before \(Self.describe(cutoff)) have been revoked")
        }
        if !cutoffs.grants.isEmpty, let subject = token.subject, let client = token.clientID,
           let cutoff = Self.grantCutoff(cutoffs, issuer: token.issuer, subject: subject, client: client),
           Self.issuedBefore(token, cutoff) {
            return .revoked(detail: "this subject's tokens for this client issued before \(Self.describe(cutoff)) have been revoked")
        }
        if !cutoffs.keys.isEmpty, let kid = token.keyID,
           cutoffs.keys[ExactKey(token.issuer + "|" + kid)] != nil || cutoffs.keys[ExactKey("*|" + kid)] != nil {
            return .revoked(detail: "the key that signed this token has been revoked")
        }
        return .allowed
    }

    /// The ids of the grant cut-offs in force for exactly this issuer, subject and client that
    /// `actor` wrote with a cut-off at or before `notAfterMillis`: those a new one of the same
    /// writer at that instant covers.
    public func grantCutoffIDs(issuer: String, subject: String, client: String, actor: String, notAfterMillis: Int64) -> [String] {
        let key = ExactKey(Revocation.grantKey(issuer: issuer, subject: subject, client: client))
        return state.value.cutoffs.adds.filter {
            $0.value.kind == .grant && $0.value.key == key && ExactString.equal($0.value.actor, actor) && $0.value.cutoffMillis <= notAfterMillis
        }.map(\.key).sorted()
    }

    /// Whether a revocation of the token `jti` is in force.
    public func isTokenRevoked(jti: String) -> Bool {
        let fingerprint = RevokedTokenTable.fingerprint(jti)
        return state.read { $0.tokens.expiry(of: fingerprint) != nil }
    }

    /// Whether a session revocation in force names `sid`, for `issuer` or for every issuer.
    public func isSessionRevoked(issuer: String, sid: String) -> Bool {
        state.read { Self.holds($0.sessions, issuer: issuer, sid: sid) }
    }

    /// Whether `sessions` holds `sid` for `issuer` or for every issuer (`*`).
    private static func holds(_ sessions: RevokedTokenTable, issuer: String, sid: String) -> Bool {
        let session = RevokedTokenTable.fingerprint(sid)
        return sessions.expiry(of: .session(issuer: RevokedTokenTable.fingerprint(issuer), sid: session)) != nil
            || sessions.expiry(of: .session(issuer: RevokedTokenTable.anyIssuer, sid: session)) != nil
    }

    /// Whether a signed delete this node applied lifted the cut-off change `id`.
    public func isLifted(_ id: String) -> Bool {
        state.value.cutoffs.lifted.contains(id)
    }

    /// Whether a key revocation in force names `kid`, for `issuer` or for every issuer.
    public func isKeyRevoked(kid: String, issuer: String) -> Bool {
        let keys = state.value.cutoffs.keys
        return keys[ExactKey(issuer + "|" + kid)] != nil || keys[ExactKey("*|" + kid)] != nil
    }

    /// The latest subject, client and grant cut-offs in force for tokens of `issuer` naming
    /// `subject` and `clientID`, Unix milliseconds — for what outlives a token at its issuer (a
    /// refresh token, a sign-in session, a remembered consent), which a cut-off ends too.
    public func cutoffs(issuer: String, subject: String?, clientID: String?) -> (subject: Int64?, client: Int64?, grant: Int64?) {
        let cutoffs = state.value.cutoffs
        var grant: Int64?
        if let subject, let clientID { grant = Self.grantCutoff(cutoffs, issuer: issuer, subject: subject, client: clientID) }
        return (subject.flatMap { Self.later(cutoffs.subjects[ExactKey(issuer + "|" + $0)], cutoffs.subjects[ExactKey("*|" + $0)]) },
                clientID.flatMap { Self.later(cutoffs.clients[ExactKey(issuer + "|" + $0)], cutoffs.clients[ExactKey("*|" + $0)]) },
                grant)
    }

    private static func grantCutoff(_ cutoffs: Cutoffs, issuer: String, subject: String, client: String) -> Int64? {
        later(cutoffs.grants[ExactKey(Revocation.grantKey(issuer: issuer, subject: subject, client: client))],
              cutoffs.grants[ExactKey(Revocation.grantKey(issuer: "*", subject: subject, client: client))])
    }

    private static func later(_ first: Int64?, _ second: Int64?) -> Int64? {
        guard let first else { return second }
        guard let second else { return first }
        return max(first, second)
    }

    /// Compared in milliseconds, `iat` rounded down: a whole-second `iat` counts from the start of
    /// its second, so a token issued earlier in the cut-off's second is refused (and so is one
    /// issued later in that second — docs/admin-api.md). A token without `iat` cannot show it was
    /// issued after the cut-off, so it counts as before.
    static func issuedBefore(_ token: VerifiedToken, _ cutoffMillis: Int64) -> Bool {
        (token.issuedAtMillis ?? Int64.min) < cutoffMillis
    }

    /// A cut-off for a refusal's detail: Unix seconds with milliseconds (`1764370000.250`).
    static func describe(_ cutoffMillis: Int64) -> String {
        let fraction = String(abs(cutoffMillis % 1000))
        return "\(cutoffMillis / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)"
    }

    // MARK: Changes (single writer: the node's sync task)

    /// Adds `observer`, called after each batch of changes has been applied (on the sync task:
    /// it must return quickly, and hop to where its work belongs). Holders of long-lived
    /// connections use it to re-check the tokens those connections were admitted with.
    public func onChange(_ observer: @escaping @Sendable () -> Void) {
        changeObservers.withLock { $0.append(observer) }
    }

    private func notifyChange() {
        for observer in changeObservers.withLock({ $0 }) { observer() }
    }

    /// jti and session entries outlive their `exp` by this much, covering verification leeway (an
    /// issuer's `leeway_seconds` is at most this).
    static let expiryGrace = Int64(IssuerConfig.maxLeewaySeconds)

    /// Applies one change (the sync task does this for every event; public for benchmarks and
    /// tools that build a set without Redis). jti entries that are already expired are skipped.
    public func apply(_ revocation: Revocation, now: Int64) {
        applyAll(CollectionOfOne(revocation), now: now)
    }

    /// Applies changes in order: the tokens of every jti change in one bulk insert, the sessions
    /// of every session change in another, every cut-off and key change in one replacement of the
    /// (small) cut-off state.
    func applyAll(_ revocations: some Collection<Revocation>, now: Int64) {
        var tokens: [(RevokedTokenTable.Fingerprint, Int64)] = []
        var sessions: [(RevokedTokenTable.Fingerprint, Int64)] = []
        var scoped: [Revocation] = []
        for revocation in revocations {
            switch revocation.kind {
            case .jti:
                guard revocation.operation == .add else { continue }
                for token in revocation.tokens where token.expiresAt > now - Self.expiryGrace {
                    tokens.append((RevokedTokenTable.fingerprint(token.jti), token.expiresAt))
                }
            case .session:
                guard revocation.operation == .add, revocation.until > now - Self.expiryGrace else { continue }
                let issuer = revocation.issuer.map(RevokedTokenTable.fingerprint) ?? RevokedTokenTable.anyIssuer
                sessions.append((.session(issuer: issuer, sid: RevokedTokenTable.fingerprint(revocation.value)), revocation.until))
            case .subject, .client, .grant, .key:
                scoped.append(revocation)
            }
        }
        if !tokens.isEmpty { addFingerprints(tokens, to: .tokens, now: now) }
        if !sessions.isEmpty { addFingerprints(sessions, to: .sessions, now: now) }
        guard !scoped.isEmpty else {
            if !tokens.isEmpty || !sessions.isEmpty { notifyChange() }
            return
        }
        let newKeys: Set<ExactKey>? = state.update { current in
            var cutoffs = current.cutoffs
            let keysBefore = cutoffs.keys.count
            for revocation in scoped { Self.apply(revocation, to: &cutoffs) }
            let changed = cutoffs.keys.count != keysBefore
            return (State(tokens: current.tokens, sessions: current.sessions, cutoffs: cutoffs), changed ? Set(cutoffs.keys.keys) : nil)
        }
        if let newKeys { onKeysChanged(newKeys) }
        notifyChange()
    }

    private static func apply(_ revocation: Revocation, to cutoffs: inout Cutoffs) {
        let key = ExactKey(revocation.scopedValue)
        switch (revocation.kind, revocation.operation) {
        case (.subject, .add), (.client, .add), (.grant, .add):
            // A replay, or a cut-off already lifted: nothing to do.
            guard cutoffs.adds[revocation.id] == nil, !cutoffs.lifted.contains(revocation.id) else { return }
            let cutoff = revocation.cutoffMillis
            cutoffs.adds[revocation.id] = CutoffAdd(kind: revocation.kind, key: key, cutoffMillis: cutoff, actor: revocation.actor)
            guard let table = Self.table(revocation.kind) else { return }
            cutoffs[keyPath: table][key] = max(cutoffs[keyPath: table][key] ?? .min, cutoff)
        case (.subject, .delete), (.client, .delete), (.grant, .delete):
            guard let lifted = revocation.lifts else { return }
            cutoffs.lifted.insert(lifted)
            // Only the cut-off this delete names, and only if it is the same subject, client or grant.
            guard let add = cutoffs.adds[lifted], add.kind == revocation.kind, add.key == key else { return }
            cutoffs.adds[lifted] = nil
            let remaining = cutoffs.adds.values.filter { $0.kind == add.kind && $0.key == key }.map(\.cutoffMillis).max()
            if let table = Self.table(add.kind) { cutoffs[keyPath: table][key] = remaining }
        case (.key, .add):
            cutoffs.keys[key] = max(cutoffs.keys[key] ?? .min, revocation.until)
        case (.key, .delete), (.jti, _), (.session, _):
            break
        }
    }

    /// The table of a cut-off kind.
    private static func table(_ kind: Revocation.Kind) -> WritableKeyPath<Cutoffs, [ExactKey: Int64]>? {
        switch kind {
        case .subject: \.subjects
        case .client: \.clients
        case .grant: \.grants
        case .jti, .key, .session: nil
        }
    }

    /// The two fingerprint tables of the state.
    enum Table: CaseIterable {
        case tokens, sessions
    }

    private func table(_ which: Table) -> RevokedTokenTable {
        let current = state.value
        return which == .tokens ? current.tokens : current.sessions
    }

    /// Bulk insert into the jti or the session table; grows the table when needed.
    func addFingerprints(_ entries: [(RevokedTokenTable.Fingerprint, Int64)], to which: Table, now: Int64) {
        var table = table(which)
        var grown = false
        if (table.count + entries.count) * 2 >= table.capacity {
            table = table.compacted(now: now - Self.expiryGrace, extra: entries.count)
            grown = true
        }
        for (fingerprint, expiry) in entries where expiry > now - Self.expiryGrace {
            if !table.insert(fingerprint, expiresAt: expiry) {
                table = table.compacted(now: now - Self.expiryGrace, extra: table.count + entries.count)
                table.insert(fingerprint, expiresAt: expiry)
                grown = true
            }
        }
        if grown { replace(which, with: table) }
    }

    /// Publishes `table` as the jti or the session table, keeping the rest of the state.
    private func replace(_ which: Table, with table: RevokedTokenTable) {
        state.update { current in
            switch which {
            case .tokens: (State(tokens: table, sessions: current.sessions, cutoffs: current.cutoffs), ())
            case .sessions: (State(tokens: current.tokens, sessions: table, cutoffs: current.cutoffs), ())
            }
        }
    }

    /// Drops expired jti and session entries (rebuilds a table when enough expired).
    func prune(now: Int64) {
        for which in Table.allCases {
            let table = table(which)
            let compacted = table.compacted(now: now - Self.expiryGrace)
            if compacted.count < table.count { replace(which, with: compacted) }
        }
    }

    /// Entry counts by kind, for metrics and the admin API.
    public var counts: (tokens: Int, subjects: Int, clients: Int, grants: Int, keys: Int, sessions: Int) {
        let current = state.value
        return (current.tokens.count, current.cutoffs.subjects.count, current.cutoffs.clients.count, current.cutoffs.grants.count,
                current.cutoffs.keys.count, current.sessions.count)
    }
}
