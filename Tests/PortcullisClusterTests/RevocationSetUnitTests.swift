@testable import PortcullisCluster
import Foundation
import PortcullisJOSE
import Synchronization
import Testing

@Suite("revocation set (in process)")
struct RevocationSetUnitTests {
    static let now: Int64 = 1_800_000_000

    static func token(jti: String? = "j1", subject: String = "alice", client: String = "app", kid: String = "k1",
                      issuer: String = "https://idp", issuedAt: Int64? = now - 60, sid: String? = nil) -> VerifiedToken {
        VerifiedToken(issuerName: "idp", issuer: issuer, subject: subject, jwtID: jti, clientID: client, audiences: ["api"],
                      scopes: [], expiresAt: now + 3600, notBefore: nil, issuedAt: issuedAt,
                      keyID: kid, algorithm: .ES256, claims: [:], sessionID: sid)
    }

    static func revocation(_ kind: Revocation.Kind, _ value: String, until: Int64, issuer: String? = nil,
                           operation: Revocation.Operation = .add, id: String = UUID().uuidString, lifts: String? = nil) -> Revocation {
        Revocation(id: id, operation: operation, kind: kind, value: value, issuer: issuer, until: until,
                   createdAtMillis: now * 1000, actor: "test", reason: nil, lifts: lifts)
    }

    static func isRevoked(_ set: RevocationSet, _ token: VerifiedToken) -> Bool {
        if case .revoked = set.check(token) { return true }
        return false
    }

    @Test("a revoked jti is refused; other jtis and tokens without a jti pass")
    func jti() {
        let set = RevocationSet()
        set.apply(Self.revocation(.jti, "j1", until: Self.now + 3600), now: Self.now)
        #expect(Self.isRevoked(set, Self.token(jti: "j1")))
        #expect(!Self.isRevoked(set, Self.token(jti: "j2")))
        #expect(!Self.isRevoked(set, Self.token(jti: nil)))
        #expect(set.counts.tokens == 1)
    }

    @Test("jti entries past their expiry (plus grace) are skipped and pruned")
    func jtiExpiry() {
        let set = RevocationSet()
        set.apply(Self.revocation(.jti, "old", until: Self.now - RevocationSet.expiryGrace - 1), now: Self.now)
        #expect(set.counts.tokens == 0)
        set.apply(Self.revocation(.jti, "soon", until: Self.now + 10), now: Self.now)
        #expect(Self.isRevoked(set, Self.token(jti: "soon")))
        set.prune(now: Self.now + 10 + RevocationSet.expiryGrace + 1)
        #expect(set.counts.tokens == 0)
    }

    @Test("thousands of jtis: every one is found after the table grows, none of the others")
    func growth() {
        let set = RevocationSet()
        for index in 0..<5000 { set.apply(Self.revocation(.jti, "jti-\(index)", until: Self.now + 3600), now: Self.now) }
        #expect(set.counts.tokens == 5000)
        #expect((0..<5000).allSatisfy { Self.isRevoked(set, Self.token(jti: "jti-\($0)")) })
        #expect(!(0..<5000).contains { Self.isRevoked(set, Self.token(jti: "other-\($0)")) })
    }

    @Test("a subject cut-off revokes tokens issued before it (and tokens without iat), not after; a delete naming it lifts it")
    func subjectCutoff() {
        let set = RevocationSet()
        let add = Self.revocation(.subject, "alice", until: Self.now)
        set.apply(add, now: Self.now)
        #expect(Self.isRevoked(set, Self.token(subject: "alice", issuedAt: Self.now - 1)))
        #expect(Self.isRevoked(set, Self.token(subject: "alice", issuedAt: nil)))
        #expect(!Self.isRevoked(set, Self.token(subject: "alice", issuedAt: Self.now)))
        #expect(!Self.isRevoked(set, Self.token(subject: "bob", issuedAt: Self.now - 1)))
        // A delete naming another change lifts nothing.
        set.apply(Self.revocation(.subject, "alice", until: Self.now, operation: .delete, lifts: "rev_other"), now: Self.now)
        #expect(Self.isRevoked(set, Self.token(subject: "alice", issuedAt: Self.now - 1)))
        set.apply(Self.revocation(.subject, "alice", until: Self.now, operation: .delete, lifts: add.id), now: Self.now)
        #expect(!Self.isRevoked(set, Self.token(subject: "alice", issuedAt: Self.now - 1)))
    }

    @Test("subjects, clients, grants and kids are matched byte for byte: revoking one spelling (U+212B, a decomposed é) leaves a canonically equivalent one's tokens and keys alone")
    func canonicallyEquivalentNamesAreOtherNames() {
        let angstrom = "user-\u{212B}", ring = "user-\u{00C5}"          // ANGSTROM SIGN, LATIN CAPITAL A WITH RING
        let decomposed = "jose\u{0301}", precomposed = "jos\u{00E9}"
        #expect(angstrom == ring && decomposed == precomposed)          // what Swift's String equality says
        var changed: Set<ExactKey> = []
        let lock = Mutex<Set<ExactKey>>([])
        let set = RevocationSet(onKeysChanged: { keys in lock.withLock { $0 = keys } })
        set.apply(Self.revocation(.subject, angstrom, until: Self.now), now: Self.now)
        set.apply(Self.revocation(.client, decomposed, until: Self.now), now: Self.now)
        var grant = Self.revocation(.grant, angstrom, until: Self.now, issuer: "https://idp")
        grant.client = decomposed
        set.apply(grant, now: Self.now)
        set.apply(Self.revocation(.key, "k-\u{212A}", until: Self.now + 3600), now: Self.now)   // KELVIN SIGN
        #expect(Self.isRevoked(set, Self.token(subject: angstrom, issuedAt: Self.now - 1)))
        #expect(!Self.isRevoked(set, Self.token(subject: ring, issuedAt: Self.now - 1)))
        #expect(Self.isRevoked(set, Self.token(client: decomposed, issuedAt: Self.now - 1)))
        #expect(!Self.isRevoked(set, Self.token(client: precomposed, issuedAt: Self.now - 1)))
        #expect(!Self.isRevoked(set, Self.token(subject: ring, client: precomposed, issuedAt: Self.now - 1)))
        #expect(Self.isRevoked(set, Self.token(kid: "k-\u{212A}")))
        #expect(!Self.isRevoked(set, Self.token(kid: "k-K")))
        #expect(set.isKeyRevoked(kid: "k-\u{212A}", issuer: "https://idp") && !set.isKeyRevoked(kid: "k-K", issuer: "https://idp"))
        let cutoffs = set.cutoffs(issuer: "https://idp", subject: ring, clientID: precomposed)
        #expect(cutoffs.subject == nil && cutoffs.client == nil && cutoffs.grant == nil)
        #expect(set.cutoffs(issuer: "https://idp", subject: angstrom, clientID: decomposed).grant != nil)
        // The key sets are told the revoked kid as it was written, and drop only that one.
        changed = lock.withLock { $0 }
        let byKid = ClusterAgent.revokedKeysByKid(changed)
        #expect(byKid[ExactKey("k-\u{212A}")] == ["*"] && byKid[ExactKey("k-K")] == nil)
    }

    @Test("cut-offs compare in milliseconds: a whole-second iat in the cut-off's second is refused, a fractional iat keeps its fraction, the next second passes")
    func millisecondCutoff() {
        let set = RevocationSet()
        let cutoffMillis = Self.now * 1000 + 400
        set.apply(Revocation(id: "c1", operation: .add, kind: .client, value: "app", issuer: nil, until: Self.now + 1,
                             createdAtMillis: cutoffMillis, actor: "test", reason: nil, beforeMillis: cutoffMillis), now: Self.now)
        func token(iatMillis: Int64?) -> VerifiedToken {
            VerifiedToken(issuerName: "idp", issuer: "https://idp", subject: "alice", jwtID: nil, clientID: "app", audiences: ["api"],
                          scopes: [], expiresAt: Self.now + 3600, notBefore: nil, issuedAt: iatMillis.map { ($0 + 999) / 1000 },
                          issuedAtMillis: iatMillis, keyID: "k1", algorithm: .ES256, claims: [:])
        }
        #expect(Self.isRevoked(set, token(iatMillis: Self.now * 1000)))         // iat = the cut-off's second (whole)
        #expect(Self.isRevoked(set, token(iatMillis: cutoffMillis - 1)))        // a fractional iat just before it
        #expect(!Self.isRevoked(set, token(iatMillis: cutoffMillis)))           // at the cut-off
        #expect(!Self.isRevoked(set, token(iatMillis: (Self.now + 1) * 1000)))  // the next second
        #expect(Self.isRevoked(set, token(iatMillis: nil)))
        if case .revoked(let detail) = set.check(token(iatMillis: Self.now * 1000)) {
            #expect(detail.contains("\(Self.now).400"), "\(detail)")
        }
        // A cut-off in the older format (whole seconds) still applies at its second.
        set.apply(Self.revocation(.subject, "alice", until: Self.now + 10), now: Self.now)
        #expect(Self.isRevoked(set, Self.token(jti: nil, client: "other", issuedAt: Self.now + 9)))
        #expect(!Self.isRevoked(set, Self.token(jti: nil, client: "other", issuedAt: Self.now + 10)))
    }

    @Test("replaying an old signed lift does not lift a later cut-off of the same subject, and a lifted cut-off cannot come back")
    func liftReplay() {
        let set = RevocationSet()
        let first = Self.revocation(.subject, "alice", until: Self.now - 100)
        let lift = Self.revocation(.subject, "alice", until: Self.now, operation: .delete, lifts: first.id)
        let second = Self.revocation(.subject, "alice", until: Self.now)
        set.apply(first, now: Self.now)
        set.apply(lift, now: Self.now)
        set.apply(second, now: Self.now)
        #expect(Self.isRevoked(set, Self.token(subject: "alice", issuedAt: Self.now - 1)))
        // The attack: the old lift again (and the old add and lift in any order).
        set.apply(lift, now: Self.now)
        #expect(Self.isRevoked(set, Self.token(subject: "alice", issuedAt: Self.now - 1)))
        set.apply(first, now: Self.now)
        #expect(set.counts.subjects == 1)
        // Two cut-offs of one subject: lifting the later one leaves the earlier in force.
        let later = Self.revocation(.subject, "alice", until: Self.now + 50)
        set.apply(later, now: Self.now)
        #expect(Self.isRevoked(set, Self.token(subject: "alice", issuedAt: Self.now + 10)))
        set.apply(Self.revocation(.subject, "alice", until: Self.now, operation: .delete, lifts: later.id), now: Self.now)
        #expect(!Self.isRevoked(set, Self.token(subject: "alice", issuedAt: Self.now + 10)))
        #expect(Self.isRevoked(set, Self.token(subject: "alice", issuedAt: Self.now - 1)))
    }

    @Test("an issuer-scoped client cut-off applies to that issuer only")
    func clientCutoffScoped() {
        let set = RevocationSet()
        set.apply(Self.revocation(.client, "app", until: Self.now, issuer: "https://idp"), now: Self.now)
        #expect(Self.isRevoked(set, Self.token(client: "app", issuer: "https://idp")))
        #expect(!Self.isRevoked(set, Self.token(client: "app", issuer: "https://other")))
    }

    @Test("a grant cut-off revokes one subject's tokens for one client issued before it — not the subject's other clients, nor the client's other subjects; a delete naming it lifts it")
    func grantCutoff() {
        let set = RevocationSet()
        var add = Self.revocation(.grant, "alice", until: Self.now, issuer: "https://idp")
        add.client = "app"
        set.apply(add, now: Self.now)
        #expect(Self.isRevoked(set, Self.token(subject: "alice", client: "app", issuedAt: Self.now - 1)))
        #expect(Self.isRevoked(set, Self.token(subject: "alice", client: "app", issuedAt: nil)))
        #expect(!Self.isRevoked(set, Self.token(subject: "alice", client: "app", issuedAt: Self.now)))
        #expect(!Self.isRevoked(set, Self.token(subject: "alice", client: "other-app", issuedAt: Self.now - 1)))
        #expect(!Self.isRevoked(set, Self.token(subject: "bob", client: "app", issuedAt: Self.now - 1)))
        #expect(!Self.isRevoked(set, Self.token(subject: "alice", client: "app", issuer: "https://other", issuedAt: Self.now - 1)))
        // The same three strings split otherwise name another grant: the client's length is in the key.
        #expect(!Self.isRevoked(set, Self.token(subject: "ice", client: "appal", issuedAt: Self.now - 1)))
        #expect(!Self.isRevoked(set, Self.token(subject: "pp" + "alice", client: "a", issuedAt: Self.now - 1)))
        #expect(set.cutoffs(issuer: "https://idp", subject: "alice", clientID: "app").grant == Self.now * 1000)
        #expect(set.cutoffs(issuer: "https://idp", subject: "alice", clientID: "other-app").grant == nil)
        #expect(set.counts.grants == 1)
        // A delete naming it, for the same grant, lifts it; one for another client does not.
        var wrongClient = Self.revocation(.grant, "alice", until: Self.now, issuer: "https://idp", operation: .delete, lifts: add.id)
        wrongClient.client = "other-app"
        set.apply(wrongClient, now: Self.now)
        #expect(Self.isRevoked(set, Self.token(subject: "alice", client: "app", issuedAt: Self.now - 1)))
        var lift = Self.revocation(.grant, "alice", until: Self.now, issuer: "https://idp", operation: .delete, lifts: add.id)
        lift.client = "app"
        set.apply(lift, now: Self.now)
        #expect(!Self.isRevoked(set, Self.token(subject: "alice", client: "app", issuedAt: Self.now - 1)))
        #expect(set.counts.grants == 0)
    }

    @Test("a session revocation refuses every token carrying its sid from its issuer (any issuer's without one), whatever its jti or issue time, until its until plus the grace; tokens of other sessions or without a sid pass")
    func session() {
        let set = RevocationSet()
        set.apply(Self.revocation(.session, "fam_1", until: Self.now + 300, issuer: "https://idp"), now: Self.now)
        #expect(Self.isRevoked(set, Self.token(jti: "a", sid: "fam_1")))
        #expect(Self.isRevoked(set, Self.token(jti: "b", issuedAt: Self.now + 10, sid: "fam_1")))
        #expect(Self.isRevoked(set, Self.token(jti: nil, issuedAt: nil, sid: "fam_1")))
        #expect(!Self.isRevoked(set, Self.token(jti: "a", sid: "fam_2")))
        #expect(!Self.isRevoked(set, Self.token(jti: "a")))
        #expect(!Self.isRevoked(set, Self.token(jti: "a", issuer: "https://other", sid: "fam_1")))
        // The issuer's length is in the key: another split of the same bytes is another session.
        #expect(!Self.isRevoked(set, Self.token(jti: "a", issuer: "https://id", sid: "pfam_1")))
        #expect(set.isSessionRevoked(issuer: "https://idp", sid: "fam_1"))
        #expect(!set.isSessionRevoked(issuer: "https://other", sid: "fam_1"))
        #expect(set.counts.sessions == 1 && set.counts.tokens == 0)
        // Without an issuer, every issuer's.
        set.apply(Self.revocation(.session, "shared", until: Self.now + 300), now: Self.now)
        #expect(Self.isRevoked(set, Self.token(issuer: "https://other", sid: "shared")))
        // A delete does not lift it (a session revocation cannot be lifted).
        set.apply(Self.revocation(.session, "fam_1", until: Self.now, issuer: "https://idp", operation: .delete, lifts: "x"), now: Self.now)
        #expect(Self.isRevoked(set, Self.token(sid: "fam_1")))
        // Expired past the grace: skipped when applied, dropped when pruned.
        set.apply(Self.revocation(.session, "old", until: Self.now - RevocationSet.expiryGrace - 1, issuer: "https://idp"), now: Self.now)
        #expect(!Self.isRevoked(set, Self.token(sid: "old")))
        set.prune(now: Self.now + 300 + RevocationSet.expiryGrace - 1)
        #expect(set.counts.sessions == 2)
        set.prune(now: Self.now + 300 + RevocationSet.expiryGrace + 1)
        #expect(set.counts.sessions == 0)
        #expect(!Self.isRevoked(set, Self.token(sid: "fam_1")))
    }

    @Test("a revoked key refuses every token it signed and is reported to the key sets")
    func key() {
        let reported = Mutex<Set<ExactKey>>([])
        let set = RevocationSet { keys in reported.withLock { $0 = keys } }
        set.apply(Self.revocation(.key, "k1", until: Self.now), now: Self.now)
        #expect(Self.isRevoked(set, Self.token(kid: "k1")))
        #expect(!Self.isRevoked(set, Self.token(kid: "k2")))
        #expect(reported.withLock { $0 } == ["*|k1"])
    }

    @Test("stale state is served up to the limit, fails closed once it passes, and confirming it re-opens")
    func staleness() {
        let clock = Atomic<UInt64>(1_000_000_000)
        let staleness = StalenessClock(limit: .seconds(5)) { clock.load(ordering: .relaxed) }
        let set = RevocationSet(staleness: staleness)
        staleness.confirm()
        func isStale() -> Bool {
            if case .stale = set.check(Self.token()) { return true }
            return false
        }
        #expect(set.check(Self.token()) == .allowed)
        // Unconfirmed for 1 s, 4 s, exactly the limit: still served.
        for age: UInt64 in [1_000_000_000, 4_000_000_000, 5_000_000_000] {
            clock.store(1_000_000_000 + age, ordering: .relaxed)
            #expect(set.check(Self.token()) == .allowed, "refused at age \(age) ns, within the 5 s limit")
            #expect(staleness.exceededAge() == nil)
        }
        // Past it: refused, whatever the token.
        clock.store(6_000_000_001, ordering: .relaxed)
        #expect(isStale())
        #expect(staleness.exceededAge() == 5)
        clock.store(9_000_000_000, ordering: .relaxed)
        #expect(isStale())
        staleness.confirm()
        #expect(set.check(Self.token()) == .allowed)
        // Without a limit, no age is stale.
        let unlimited = StalenessClock(limit: nil) { clock.load(ordering: .relaxed) }
        clock.store(UInt64.max / 2, ordering: .relaxed)
        #expect(unlimited.exceededAge() == nil)
    }

    @Test("a confirmation stamped after the reader read its clock is age 0, not stale")
    func confirmationAfterReading() {
        let clock = Atomic<UInt64>(10_000_000_000)
        let staleness = StalenessClock(limit: .seconds(5)) { clock.load(ordering: .relaxed) }
        let set = RevocationSet(staleness: staleness)
        staleness.confirm()
        // The request's reading of the clock is older than the sync task's confirmation.
        clock.store(9_999_999_000, ordering: .relaxed)
        #expect(set.check(Self.token()) == .allowed)
        #expect(staleness.ageSeconds == 0)
    }

    @Test("a change is seen by readers on every thread, including threads that read before it")
    func publishedAcrossThreads() async {
        let set = RevocationSet()
        let token = Self.token(subject: "late")
        // Every thread of the pool reads first, so each caches the state without the revocation.
        await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<32 { group.addTask { Self.isRevoked(set, token) } }
            for await revoked in group { #expect(!revoked) }
        }
        // A cut-off replaces the published state (a jti insert would not: the table is shared).
        set.apply(Self.revocation(.subject, "late", until: Self.now), now: Self.now)
        await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<32 { group.addTask { Self.isRevoked(set, token) } }
            for await revoked in group { #expect(revoked) }
        }
    }
}
