import Foundation
@testable import PortcullisJOSE
import Synchronization
import Testing

@Suite("verified-token cache")
struct CacheTests {
    struct Setup {
        let signer: JWTSigner
        let issuer: IssuerConfig
        let store: KeySetStore
        let clock: TestClock
        let cache: VerifiedTokenCache
        let verifier: JWTVerifier
    }

    static func setup(capacity: Int = 1000, shards: Int = 16) throws -> Setup {
        let signer = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "k1")
        let issuer = Fixture.issuerConfig(algorithms: [.ES256, .HS256])
        let store = KeySetStore()
        store.replace(issuerName: "main", keySet: try JWKSet.parse(Fixture.jwks([signer]), issuer: issuer, logger: nil), version: nil)
        let clock = TestClock()
        let cache = VerifiedTokenCache(capacity: capacity, shards: shards)
        return Setup(signer: signer, issuer: issuer, store: store, clock: clock, cache: cache,
                     verifier: JWTVerifier(issuers: [issuer], keys: store, cache: cache, now: { clock.now }))
    }

    @Test("a hit returns the same result without verifying again")
    func hit() throws {
        let s = try Self.setup()
        let token = try s.signer.sign(claims: Fixture.claims(["roles": ["a"]]))
        let first = try s.verifier.verify(token).get()
        #expect(s.cache.count == 1 && s.cache.misses == 1 && s.cache.hits == 0)
        let second = try s.verifier.verify(token).get()
        #expect(s.cache.hits == 1)
        #expect(second.claims == first.claims && second.subject == first.subject && second.expiresAt == first.expiresAt)
        #expect(second.keyID == first.keyID && second.scopes == first.scopes && second.algorithm == first.algorithm)
        // A token differing in one byte is not a hit (and fails on its own merits).
        var altered = Array(token.utf8)
        altered[altered.count - 3] ^= 0x01
        #expect(s.verifier.verify(altered).value == nil)
        #expect(s.cache.hits == 1)
        // Rejected tokens are never cached.
        #expect(s.cache.count == 1)
    }

    @Test("an entry is dropped once the token expires; expired tokens are not cached")
    func expiry() throws {
        let s = try Self.setup()
        let token = try s.signer.sign(claims: Fixture.claims(["exp": .integer(Fixture.now + 100)]))
        _ = try s.verifier.verify(token).get()
        _ = try s.verifier.verify(token).get()
        #expect(s.cache.hits == 1)
        s.clock.set(Fixture.now + 100)
        // Past exp the cache no longer answers; the full check still grants the leeway.
        #expect(s.verifier.verify(token).value != nil)
        #expect(s.cache.hits == 1)
        #expect(s.cache.count == 0)
        s.clock.set(Fixture.now + 131)
        #expect(s.verifier.verify(token).reason == .expired)
    }

    @Test("an entry is dropped when its key leaves the set or its kid is revoked")
    func keyChanges() throws {
        let s = try Self.setup()
        let token = try s.signer.sign(claims: Fixture.claims())
        _ = try s.verifier.verify(token).get()
        // Same key re-published (new JWKSet object, same material): still a hit.
        s.store.replace(issuerName: "main", keySet: try JWKSet.parse(Fixture.jwks([s.signer]), issuer: s.issuer, logger: nil), version: "v2")
        #expect(s.verifier.verify(token).value != nil)
        #expect(s.cache.hits == 1)
        s.store.setRevokedKeys(["k1": ["*"]])
        #expect(s.verifier.verify(token).reason == .keyRevoked)
        s.store.setRevokedKeys([:])
        _ = try s.verifier.verify(token).get()
        // Rotated out: a new set without k1.
        let other = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "k2")
        s.store.replace(issuerName: "main", keySet: try JWKSet.parse(Fixture.jwks([other]), issuer: s.issuer, logger: nil), version: "v3")
        #expect(s.verifier.verify(token).reason == .unknownKeyID)
        // A different key under the same kid does not count as the same key either.
        let impostor = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "k1")
        s.store.replace(issuerName: "main", keySet: try JWKSet.parse(Fixture.jwks([s.signer]), issuer: s.issuer, logger: nil), version: "v4")
        _ = try s.verifier.verify(token).get()
        let hitsBefore = s.cache.hits
        s.store.replace(issuerName: "main", keySet: try JWKSet.parse(Fixture.jwks([impostor]), issuer: s.issuer, logger: nil), version: "v5")
        #expect(s.verifier.verify(token).reason == .badSignature)
        #expect(s.cache.hits == hitsBefore)
    }

    @Test("a cached token without kid stops being accepted once the set holds a second key")
    func missingKeyID() throws {
        let s = try Self.setup()
        let token = try s.signer.sign(claims: Fixture.claims(), extraHeader: ["kid": .null])
        #expect(s.verifier.verify(token).value != nil)
        #expect(s.verifier.verify(token).value != nil)
        #expect(s.cache.hits == 1)
        let second = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "k2")
        s.store.replace(issuerName: "main", keySet: try JWKSet.parse(Fixture.jwks([s.signer, second]), issuer: s.issuer, logger: nil), version: "v2")
        #expect(s.verifier.verify(token).reason == .unknownKeyID)
        #expect(s.cache.hits == 1)
    }

    @Test("route issuer restrictions apply to hits; a new verifier does not reuse old entries")
    func scope() throws {
        let s = try Self.setup()
        let token = try s.signer.sign(claims: Fixture.claims())
        _ = try s.verifier.verify(token).get()
        #expect(s.verifier.verify(token, allowedIssuers: ["other"]).reason == .wrongIssuer)
        var stricter = s.issuer
        stricter.audiences = ["api://elsewhere"]
        let reloaded = JWTVerifier(issuers: [stricter], keys: s.store, cache: s.cache, now: { Fixture.now })
        #expect(reloaded.verify(token).reason == .wrongAudience)
    }

    @Test("capacity is bounded")
    func bounded() throws {
        let s = try Self.setup(capacity: 32, shards: 4)
        let secret = SigningKey.hmac(.init(size: .bits256), .HS256)
        var hmacIssuer = s.issuer
        hmacIssuer.hmacKeys = [.init(keyID: "h", secret: { if case .hmac(let k, _) = secret { return k.withUnsafeBytes { Array($0) } }; return [] }(), algorithm: .HS256)]
        let store = KeySetStore()
        store.replace(issuerName: "main", keySet: JWKSet.configuredKeys(of: hmacIssuer), version: nil)
        let verifier = JWTVerifier(issuers: [hmacIssuer], keys: store, cache: s.cache, now: { Fixture.now })
        let signer = JWTSigner(key: secret, keyID: "h")
        var tokens: [String] = []
        for index in 0..<300 {
            let token = try signer.sign(claims: Fixture.claims(["jti": .string("t\(index)")]))
            tokens.append(token)
            #expect(verifier.verify(token).value != nil)
            #expect(s.cache.count <= 32)
        }
        #expect(s.cache.count >= 24)  // evicts oldest-first, roughly full
        // The newest token is still cached, the oldest is not.
        let hits = s.cache.hits
        _ = verifier.verify(tokens.last!)
        #expect(s.cache.hits == hits + 1)
        _ = verifier.verify(tokens.first!)
        #expect(s.cache.hits == hits + 1)
    }

    @Test("readers on several threads never fail while key sets are swapped")
    func swapsUnderLoad() throws {
        let s = try Self.setup()
        let token = try s.signer.sign(claims: Fixture.claims())
        let uncached = JWTVerifier(issuers: [s.issuer], keys: s.store, cache: nil, now: { Fixture.now })
        let failures = Atomic<Int>(0)
        let verifications = Atomic<Int>(0)
        let done = Atomic<Bool>(false)
        let extra = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "extra")
        let sets = [try JWKSet.parse(Fixture.jwks([s.signer]), issuer: s.issuer, logger: nil),
                    try JWKSet.parse(Fixture.jwks([extra, s.signer]), issuer: s.issuer, logger: nil)]
        // Plain threads (not the cooperative pool, which busy readers could starve).
        let group = DispatchGroup()
        for verifier in [s.verifier, uncached] {
            DispatchQueue.global().async(group: group) {
                while !done.load(ordering: .relaxed) {
                    if verifier.verify(token).value == nil { failures.add(1, ordering: .relaxed) }
                    verifications.add(1, ordering: .relaxed)
                }
            }
        }
        // At least 3000 swaps, and until the readers have done real work alongside (bounded by time).
        let deadline = ContinuousClock.now + .seconds(10)
        var round = 0
        while round < 3000 || (verifications.load(ordering: .relaxed) < 500 && ContinuousClock.now < deadline) {
            s.store.replace(issuerName: "main", keySet: sets[round % 2], version: "\(round)")
            round += 1
        }
        done.store(true, ordering: .relaxed)
        group.wait()
        #expect(failures.load(ordering: .relaxed) == 0)
        #expect(verifications.load(ordering: .relaxed) > 0)
        #expect(verifications.load(ordering: .relaxed) >= 500)
        #expect(s.store.version(issuerName: "main") == "\(round - 1)")
    }
}
