import PortcullisConfig
@testable import PortcullisJOSE
import Synchronization
import Testing

@Suite("JWTVerifier")
struct VerifierTests {
    struct Setup {
        let signers: [JWSAlgorithm: JWTSigner]
        let issuer: IssuerConfig
        let store: KeySetStore
        let clock: TestClock
        let verifier: JWTVerifier
    }

    /// One key per algorithm for the whole suite: RSA key generation is slow in debug builds.
    static let keyPool: [JWSAlgorithm: SigningKey] = {
        var pool: [JWSAlgorithm: SigningKey] = [:]
        for algorithm in JWSAlgorithm.allCases { pool[algorithm] = try? SigningKey.generate(algorithm) }
        return pool
    }()

    static func setup(algorithms: [JWSAlgorithm] = JWSAlgorithm.allCases, cache: VerifiedTokenCache? = nil) throws -> Setup {
        var signers: [JWSAlgorithm: JWTSigner] = [:]
        var hmacKeys: [IssuerConfig.HMACKey] = []
        for algorithm in algorithms {
            let key = try #require(Self.keyPool[algorithm])
            signers[algorithm] = JWTSigner(key: key, keyID: "k-\(algorithm.rawValue)")
            if case .hmac(let secret, _) = key {
                hmacKeys.append(.init(keyID: "k-\(algorithm.rawValue)", secret: secret.withUnsafeBytes { Array($0) }, algorithm: algorithm))
            }
        }
        let issuer = Fixture.issuerConfig(algorithms: algorithms, hmacKeys: hmacKeys)
        let store = KeySetStore()
        store.replace(issuerName: "main", keySet: try JWKSet.parse(Fixture.jwks(Array(signers.values)), issuer: issuer, logger: nil), version: "v1")
        let clock = TestClock()
        return Setup(signers: signers, issuer: issuer, store: store, clock: clock,
                     verifier: JWTVerifier(issuers: [issuer], keys: store, cache: cache, now: { clock.now }))
    }

    @Test("tokens signed by JWTSigner verify for every algorithm, with claims extracted", arguments: JWSAlgorithm.allCases)
    func roundTrip(_ algorithm: JWSAlgorithm) throws {
        let setup = try Self.setup()
        let signer = try #require(setup.signers[algorithm])
        let token = try signer.sign(claims: Fixture.claims(["azp": "web-app", "aud": ["api://other", .string(Fixture.audience)]]))
        let verified = try setup.verifier.verify(token).get()
        #expect(verified.algorithm == algorithm)
        #expect(verified.keyID == "k-\(algorithm.rawValue)")
        #expect(verified.issuerName == "main" && verified.issuer == Fixture.issuer)
        #expect(verified.subject == "user-1" && verified.jwtID == "jti-1")
        #expect(verified.clientID == "web-app")
        #expect(verified.audiences == ["api://other", Fixture.audience])
        #expect(verified.scopes == ["orders:read", "orders:write"])
        #expect(verified.expiresAt == Fixture.now + 600 && verified.issuedAt == Fixture.now - 10 && verified.notBefore == nil)
        #expect(verified.claims["sub"] == "user-1")
        // Bytes, Substring and String entry points agree.
        #expect(setup.verifier.verify(Array(token.utf8)).value?.subject == "user-1")
        #expect(setup.verifier.verify(("Bearer " + token).dropFirst(7)).value?.subject == "user-1")
    }

    @Test("a token signed by one key is refused under another key's kid and alg")
    func crossKey() throws {
        let setup = try Self.setup(algorithms: [.RS256, .ES256])
        let rs = try #require(setup.signers[.RS256]), es = try #require(setup.signers[.ES256])
        // RS256 signature, but the header names the EC key: the key's algorithm wins.
        let forged = try JWTSigner(key: rs.key, keyID: es.keyID).sign(claims: Fixture.claims())
        #expect(setup.verifier.verify(forged).reason == .algNotAllowed)
        // Another RSA key under the real kid: the signature fails.
        let other = try JWTSigner(key: SigningKey.generate(.RS256), keyID: rs.keyID).sign(claims: Fixture.claims())
        #expect(setup.verifier.verify(other).reason == .badSignature)
    }

    @Test("alg outside the issuer's allowlist is refused even when a key would fit")
    func allowlist() throws {
        let setup = try Self.setup(algorithms: [.ES256])
        let rsa = try JWTSigner(key: SigningKey.generate(.RS256), keyID: "k-ES256")
        #expect(setup.verifier.verify(try rsa.sign(claims: Fixture.claims())).reason == .algNotAllowed)
    }

    @Test("missing kid: accepted with exactly one usable key, refused with several")
    func missingKeyID() throws {
        let single = try Self.setup(algorithms: [.ES256])
        let signer = try #require(single.signers[.ES256])
        let token = try signer.sign(claims: Fixture.claims(), extraHeader: ["kid": .null])
        #expect(single.verifier.verify(token).value?.keyID == nil)

        let several = try Self.setup(algorithms: [.ES256, .EdDSA])
        let noKid = try #require(several.signers[.ES256]).sign(claims: Fixture.claims(), extraHeader: ["kid": .null])
        #expect(several.verifier.verify(noKid).reason == .unknownKeyID)
    }

    @Test("several issuers: iss only selects whose keys are tried; routes can restrict issuers")
    func severalIssuers() throws {
        let keyA = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "a1")
        let keyB = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "b1")
        let issuerA = Fixture.issuerConfig(name: "a", issuer: "https://a.example", algorithms: [.ES256])
        let issuerB = Fixture.issuerConfig(name: "b", issuer: "https://b.example", algorithms: [.ES256])
        let store = KeySetStore()
        store.replace(issuerName: "a", keySet: try JWKSet.parse(Fixture.jwks([keyA]), issuer: issuerA, logger: nil), version: nil)
        store.replace(issuerName: "b", keySet: try JWKSet.parse(Fixture.jwks([keyB]), issuer: issuerB, logger: nil), version: nil)
        let verifier = JWTVerifier(issuers: [issuerA, issuerB], keys: store, cache: nil, now: { Fixture.now })

        let fromB = try keyB.sign(claims: Fixture.claims(["iss": "https://b.example"]))
        #expect(verifier.verify(fromB).value?.issuerName == "b")
        #expect(verifier.verify(fromB, allowedIssuers: ["a"]).reason == .wrongIssuer)
        #expect(verifier.verify(fromB, allowedIssuers: ["a", "b"]).value?.issuerName == "b")
        // Issuer B's key claiming to be issuer A: A's set has no such kid.
        let lying = try keyB.sign(claims: Fixture.claims(["iss": "https://a.example"]))
        #expect(verifier.verify(lying).reason == .unknownKeyID)
        // ...and under A's kid, the signature does not verify.
        let lyingKid = try JWTSigner(key: keyB.key, keyID: "a1").sign(claims: Fixture.claims(["iss": "https://a.example"]))
        #expect(verifier.verify(lyingKid).reason == .badSignature)
        #expect(verifier.verify(try keyB.sign(claims: Fixture.claims(["iss": "https://c.example"]))).reason == .unknownIssuer)
        #expect(verifier.verify(try keyB.sign(claims: Fixture.claims(["iss": nil]))).reason == .missingClaim)
        #expect(verifier.verify(try keyB.sign(claims: Fixture.claims(["iss": 5]))).reason == .invalidClaim)
    }

    @Test("revoked kid, unloaded keys and unknown kid callbacks")
    func keyStates() throws {
        let setup = try Self.setup(algorithms: [.ES256])
        let signer = try #require(setup.signers[.ES256])
        let token = try signer.sign(claims: Fixture.claims())
        #expect(setup.verifier.verify(token).value != nil)
        setup.store.setRevokedKeys([ExactKey(signer.keyID): ["*"]])
        #expect(setup.verifier.verify(token).reason == .keyRevoked)
        // A key revocation limited to another issuer leaves this issuer's tokens alone.
        setup.store.setRevokedKeys([ExactKey(signer.keyID): ["https://other.example"]])
        #expect(setup.verifier.verify(token).value != nil)
        setup.store.setRevokedKeys([ExactKey(signer.keyID): [ExactKey(Fixture.issuer)]])
        #expect(setup.verifier.verify(token).reason == .keyRevoked)
        setup.store.setRevokedKeys([:])
        #expect(setup.verifier.verify(token).value != nil)
        setup.store.remove(issuerName: "main")
        #expect(setup.verifier.verify(token).reason == .keysNotLoaded)
        #expect(!setup.store.isReady)

        let seen = TestRecorder()
        let store = KeySetStore()
        store.replace(issuerName: "main", keySet: JWKSet(keys: []), version: nil)
        let verifier = JWTVerifier(issuers: [setup.issuer], keys: store, cache: nil, now: { Fixture.now },
                                   onUnknownKeyID: { issuer, kid in seen.append("\(issuer)/\(kid)") })
        #expect(verifier.verify(token).reason == .unknownKeyID)
        #expect(seen.values == ["main/k-ES256"])
    }

    @Test("time claims honour the leeway at their edges")
    func leeway() throws {
        let setup = try Self.setup(algorithms: [.HS256])
        let signer = try #require(setup.signers[.HS256])
        let now = Fixture.now
        func check(_ claims: [String: JSONValue]) throws -> RejectionReason? {
            setup.verifier.verify(try signer.sign(claims: Fixture.claims(claims))).reason
        }
        #expect(try check(["exp": .integer(now - 29)]) == nil)
        #expect(try check(["exp": .integer(now - 30)]) == .expired)
        #expect(try check(["nbf": .integer(now + 30)]) == nil)
        #expect(try check(["nbf": .integer(now + 31)]) == .notYetValid)
        // iat has its own, small tolerance (iat_leeway_seconds, default 2), not the 30 s above.
        #expect(try check(["iat": .integer(now + 2)]) == nil)
        #expect(try check(["iat": .integer(now + 3)]) == .issuedInFuture)
        #expect(try check(["iat": .integer(now + 30)]) == .issuedInFuture)
        #expect(try check(["exp": .number(Double(now) + 600.5)]) == nil)
        #expect(try check(["exp": .number(1e300)]) == .invalidClaim)
        #expect(try check(["exp": .integer(Int64.max)]) == nil)
        #expect(try check(["exp": "1900000000"]) == .invalidClaim)
        #expect(try check(["exp": nil]) == .missingClaim)
        #expect(try check(["nbf": true]) == .invalidClaim)
        #expect(try check(["aud": [1]]) == .invalidClaim)
        #expect(try check(["aud": []]) == .wrongAudience)
        #expect(try check(["sub": 42]) == .invalidClaim)
        #expect(try check(["scope": 1]) == .invalidClaim)
        // sid, which session revocations name, must be a string; it reaches the verified token.
        #expect(try check(["sid": ["fam_1"]]) == .invalidClaim)
        #expect(try setup.verifier.verify(signer.sign(claims: Fixture.claims(["sid": "fam_1"]))).value?.sessionID == "fam_1")
        // The token carries the leeway it was accepted under: a session it opens ends by it.
        let verified = try #require(try setup.verifier.verify(signer.sign(claims: Fixture.claims([:]))).value)
        #expect(verified.leewaySeconds == setup.issuer.leewaySeconds && verified.leewaySeconds == 30)
    }

    @Test("iat reaches cut-offs in milliseconds, rounded down; a fractional iat keeps its fraction")
    func issuedAtMillis() throws {
        let setup = try Self.setup(algorithms: [.HS256])
        let signer = try #require(setup.signers[.HS256])
        let now = Fixture.now
        let fractional = try #require(setup.verifier.verify(try signer.sign(claims: Fixture.claims(["iat": .number(Double(now) - 0.25)]))).value)
        #expect(fractional.issuedAtMillis == now * 1000 - 250)
        #expect(fractional.issuedAt == now)
        let whole = try #require(setup.verifier.verify(try signer.sign(claims: Fixture.claims(["iat": .integer(now - 7)]))).value)
        #expect(whole.issuedAtMillis == (now - 7) * 1000)
        let none = try #require(setup.verifier.verify(try signer.sign(claims: Fixture.claims(["iat": nil]))).value)
        #expect(none.issuedAtMillis == nil)
    }

    @Test("scp arrays, typ spellings and the per-issuer size limit")
    func claimsAndHeaders() throws {
        let setup = try Self.setup(algorithms: [.HS256])
        let signer = try #require(setup.signers[.HS256])
        let scp = try signer.sign(claims: Fixture.claims(["scope": nil, "scp": ["a", "b"], "client_id": "c1", "azp": "ignored"]))
        #expect(setup.verifier.verify(scp).value?.scopes == ["a", "b"])
        #expect(setup.verifier.verify(scp).value?.clientID == "c1")
        for typ in ["JWT", "jwt", "at+jwt", "application/at+JWT"] {
            #expect(setup.verifier.verify(try signer.sign(claims: Fixture.claims(), type: typ)).value != nil, "\(typ)")
        }
        #expect(setup.verifier.verify(try signer.sign(claims: Fixture.claims(), extraHeader: ["typ": .null])).value != nil)
        #expect(setup.verifier.verify(try signer.sign(claims: Fixture.claims(), type: "dpop+jwt")).reason == .invalidType)
        #expect(setup.verifier.verify(try signer.sign(claims: Fixture.claims(), extraHeader: ["cty": "JWT"])).reason == .unsupportedHeader)
        #expect(setup.verifier.verify(try signer.sign(claims: Fixture.claims(), extraHeader: ["kid": 7])).reason == .malformed)

        var small = setup.issuer
        small.maxTokenBytes = 200
        let verifier = JWTVerifier(issuers: [small], keys: setup.store, cache: nil, now: { Fixture.now })
        let token = try signer.sign(claims: Fixture.claims())
        #expect(token.utf8.count > 200)
        #expect(verifier.verify(token).reason == .tokenTooLarge)
        #expect(verifier.verify("").reason == .malformed)
    }

    @Test("scope requirements and claim rules from YAML")
    func policies() throws {
        let setup = try Self.setup(algorithms: [.HS256])
        let signer = try #require(setup.signers[.HS256])
        let token = try setup.verifier.verify(try signer.sign(claims: Fixture.claims([
            "realm_access": ["roles": ["admin", "ops"]], "tenant": "acme", "level": 3, "beta": true, "groups": "a b",
        ]))).get()
        func scopes(_ yaml: String) throws -> ScopeRequirement { try ScopeRequirement(node: try .parse(yaml: yaml)) }
        #expect(try scopes("{any_of: [orders:read, x]}").isSatisfied(by: token))
        #expect(try !scopes("{any_of: [x, y]}").isSatisfied(by: token))
        #expect(try scopes("{all_of: [orders:read, orders:write]}").isSatisfied(by: token))
        #expect(try !scopes("{all_of: [orders:read, admin]}").isSatisfied(by: token))
        #expect(throws: (any Error).self) { try scopes("{any_of: [a], all_of: [b]}") }
        #expect(throws: (any Error).self) { try scopes("{one_of: [a]}") }

        func rule(_ yaml: String) throws -> ClaimRule { try ClaimRule(node: try .parse(yaml: yaml)) }
        #expect(try rule("{claim: realm_access.roles, contains: admin}").matches(token))
        #expect(try !rule("{claim: realm_access.roles, contains: root}").matches(token))
        #expect(try rule("{claim: tenant, equals: acme}").matches(token))
        #expect(try !rule("{claim: tenant, equals: other}").matches(token))
        #expect(try rule("{claim: level, equals: 3}").matches(token))
        #expect(try rule("{claim: beta, equals: true}").matches(token))
        #expect(try rule("{claim: groups, contains: b}").matches(token))
        #expect(try !rule("{claim: missing.path, equals: x}").matches(token))
        #expect(try rule("{claim: tenant, equals: acme}").description == #"claim tenant equals "acme""#)
        #expect(throws: (any Error).self) { try rule("{claim: tenant}") }
        #expect(throws: (any Error).self) { try rule("{claim: a..b, equals: x}") }
    }

    /// The build before compared with Swift's `==`, canonical equivalence: a rule for tenant
    /// `Åcme` admitted `A` + U+030A `cme`, one for `Kadmin` the Kelvin sign's spelling (an
    /// attacker review, where the issuer let users choose the claim).
    @Test("claim rules and scope requirements match strings byte for byte: a canonically equivalent spelling does not pass")
    func policiesMatchExactly() throws {
        let setup = try Self.setup(algorithms: [.HS256])
        let signer = try #require(setup.signers[.HS256])
        let token = try setup.verifier.verify(try signer.sign(claims: Fixture.claims([
            "tenant": "A\u{030A}cme", "roles": ["\u{212A}admin"], "groups": "x \u{212A}admin", "scope": "\u{212A}admin orders:read",
        ]))).get()
        func rule(_ yaml: String) throws -> ClaimRule { try ClaimRule(node: try .parse(yaml: yaml)) }
        #expect(try !rule("{claim: tenant, equals: \u{00C5}cme}").matches(token))
        #expect(try rule("{claim: tenant, equals: \"A\u{030A}cme\"}").matches(token), "the same bytes still match")
        #expect(try !rule("{claim: roles, contains: Kadmin}").matches(token))
        #expect(try !rule("{claim: groups, contains: Kadmin}").matches(token))
        #expect(try !ScopeRequirement(node: try .parse(yaml: "{any_of: [Kadmin]}")).isSatisfied(by: token))
        #expect(try ScopeRequirement(node: try .parse(yaml: "{all_of: [orders:read]}")).isSatisfied(by: token))
    }

    @Test("signing keys survive export and import")
    func exportImport() throws {
        for algorithm in JWSAlgorithm.allCases {
            let key = try #require(Self.keyPool[algorithm])
            let restored = try SigningKey(exported: key.exportPrivate())
            #expect(restored.algorithm == algorithm)
            let token = try JWTSigner(key: restored, keyID: "k").sign(claims: Fixture.claims())
            let verification = try key.verificationKey(keyID: "k")
            let parts = token.split(separator: ".")
            let signature = try #require(Base64URL.decode(parts[2]))
            #expect(Array("\(parts[0]).\(parts[1])".utf8).withUnsafeBytes { verification.isValidSignature(signature, signingInput: $0) }, "\(algorithm)")
        }
    }
}

/// Collects strings from any thread.
final class TestRecorder: Sendable {
    private let storage = Mutex<[String]>([])
    func append(_ value: String) { storage.withLock { $0.append(value) } }
    var values: [String] { storage.withLock { $0 } }
}
