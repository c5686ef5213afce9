import Crypto
import Foundation
import Mustache
import PortcullisCluster
import PortcullisJOSE
@testable import PortcullisControl
import PortcullisTestSupport
import Synchronization
import Testing

@Suite("control plane: pure logic")
struct ControlUnitTests {
    /// swift-mustache's own escaping compares whole Characters: each of these is one Character
    /// that is not `"`, `<` or `>`, so the build before let them through raw (an attacker review
    /// broke out of the sign-in page's hidden field with them).
    @Test("page values are escaped per Unicode scalar: quotes and angle brackets joined to a zero-width joiner, a combining mark or a prepended mark are escaped too")
    func pageValuesEscapedPerScalar() {
        let library = MustacheLibrary(fixed: ["field": "<input value=\"{{v}}\"><p>{{v}}</p>"])
        for joined in ["\"\u{200D}", "\"\u{0301}", "\u{0600}\"", ">\u{200D}", "<\u{0301}", "\u{0600}<", "'\u{200D}", "&\u{0301}"] {
            let html = library.render(["v": joined + "x"], withTemplate: "field") ?? ""
            let raw = html.unicodeScalars.filter { "\"<>'".unicodeScalars.contains($0) }.count
            // Only the template's own: two quotes and six angle brackets.
            #expect(raw == 8, "\(joined.unicodeScalars.map { String($0.value, radix: 16) }) → \(html)")
        }
        #expect(ScalarHTMLEscaping.escape("a<b>\"c\"&'d'") == "a&lt;b&gt;&quot;c&quot;&amp;&#39;d&#39;")
    }

    @Test("a grant's maximum lifetime ends it at its start plus the lifetime; a start in the future counts as now, and no start overflows")
    func grantLifetime() {
        let hour = Duration.seconds(3600)
        #expect(!AuthorizationServer.grantEnded(createdMillis: 1_000, lifetime: hour, nowMillis: 1_000 + 3_599_999))
        #expect(AuthorizationServer.grantEnded(createdMillis: 1_000, lifetime: hour, nowMillis: 1_000 + 3_600_000))
        // An unsigned start a Redis writer set (on a family written before starts were signed)
        // crashed the control plane with Int64.max (a code review).
        #expect(!AuthorizationServer.grantEnded(createdMillis: .max, lifetime: hour, nowMillis: 1_800_000_000_000))
        #expect(AuthorizationServer.grantEnded(createdMillis: .min, lifetime: hour, nowMillis: 1_800_000_000_000))
    }

    @Test("a control plane's node_id with a space, or longer than 128 bytes, is refused naming the file and key")
    func controlNodeID() throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-node-id")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/c.yaml"
        for id in ["control 1", String(repeating: "c", count: 129)] {
            try """
            node_id: \(id)
            cluster: {redis: redis://127.0.0.1:1, secret: \(Base64URL.encode([UInt8](repeating: 1, count: 32)))}
            admin_tokens: [{name: ops, sha256: \(Hex.sha256("x"))}]
            """.write(toFile: file, atomically: true, encoding: .utf8)
            do {
                _ = try ControlConfig.load(file: file)
                Issue.record("accepted node_id '\(id)'")
            } catch {
                #expect("\(error)".contains("c.yaml:1") && "\(error)".contains("node_id"), "\(error)")
            }
        }
    }

    @Test("form bodies decode strictly: escapes, plus as space, repeated names refused")
    func formDecoding() {
        #expect(FormEncoding.decode("grant_type=client_credentials&scope=a+b%3Ac") == ["grant_type": "client_credentials", "scope": "a b:c"])
        #expect(FormEncoding.decode("a=1&a=2") == nil)
        #expect(FormEncoding.decode("a=%zz") == nil)
        #expect(FormEncoding.decode("a=%E2%82") == nil)  // not UTF-8
        #expect(FormEncoding.unescape(FormEncoding.escape("p@ss w:rd/ü")[...]) == "p@ss w:rd/ü")
    }

    @Test("revocation input: each kind's rules, and the field named in every refusal")
    func revocationInput() throws {
        let now: Int64 = 1_800_000_000
        func parse(_ json: String) throws -> RevocationInput {
            guard case .object(let members) = try JOSEJSONReader.parse(Array(json.utf8)) else { throw FixtureError("not an object") }
            return try RevocationInput.parse(members, now: now, maxTokenLifetime: .seconds(3600))
        }
        func field(_ json: String) -> String? {
            do { _ = try parse(json); return nil } catch let error as APIError { return error.field } catch { return "?" }
        }
        #expect(try parse(#"{"kind":"jti","value":"a","exp":1800000100}"#).until == 1_800_000_100)
        #expect(try parse(#"{"kind":"jti","value":"a"}"#).until == now + 3600)
        #expect(try parse(#"{"kind":"subject","value":"bob"}"#).until == now)
        #expect(try parse(#"{"kind":"subject","value":"bob"}"#).beforeMillis == now * 1000)
        #expect(try parse(#"{"kind":"client","value":"c","before":"2027-01-15T08:00:00Z"}"#).until == 1_800_000_000)
        #expect(try parse(#"{"kind":"jti","value":"a"}"#).beforeMillis == nil)
        #expect(try parse(#"{"kind":"key","value":"k1","issuer":"https://i"}"#).issuer == "https://i")
        #expect(field(#"{"value":"a"}"#) == "kind")
        #expect(field(#"{"kind":"token","value":"a"}"#) == "kind")
        #expect(field(#"{"kind":"jti"}"#) == "value")
        #expect(field(#"{"kind":"jti","value":""}"#) == "value")
        #expect(field(#"{"kind":"jti","value":"a","exp":1}"#) == "exp")
        #expect(field(#"{"kind":"jti","value":"a","before":1}"#) == "before")
        #expect(field(#"{"kind":"subject","value":"a","exp":1900000000}"#) == "exp")
        #expect(field(#"{"kind":"subject","value":"a","before":"yesterday"}"#) == "before")
        #expect(field(#"{"kind":"subject","value":"a","issuer":"x|y"}"#) == "issuer")
        #expect(field(#"{"kind":"subject","value":"a","colour":"red"}"#) == "colour")
        #expect(field(#"{"kind":"subject","value":"a\u0001"}"#) == "value")
        // `*` is every issuer to the nodes: not a value one may name (leave issuer out instead).
        #expect(field(#"{"kind":"subject","value":"a","issuer":"*"}"#) == "issuer")
        // A reason is shown on operators' terminals and pages: no line breaks, escapes or bidi overrides.
        for reason in [#"a\nb"#, #"\u001b[2J"#, #"x\u202Ey"#, #"a\u2028b"#, #"a\u0085b"#] {
            #expect(field(#"{"kind":"subject","value":"a","reason":""# + reason + #""}"#) == "reason", "\(reason)")
        }
        #expect(try parse(#"{"kind":"subject","value":"a","reason":"incident 42 — café"}"#).reason == "incident 42 — café")
        #expect(field(#"{"kind":"key","value":"k","exp":1900000000}"#) == "exp")
        // A session: its sid, an issuer if given, until its exp (default now + max_token_lifetime).
        let session = try parse(#"{"kind":"session","value":"fam_1","issuer":"https://i","exp":1800000300}"#)
        #expect(session.kind == .session && session.value == "fam_1" && session.issuer == "https://i" && session.until == 1_800_000_300)
        #expect(try parse(#"{"kind":"session","value":"fam_1"}"#).until == now + 3600)
        #expect(field(#"{"kind":"session","value":"fam_1","exp":1}"#) == "exp")
        #expect(field(#"{"kind":"session","value":"fam_1","before":"now"}"#) == "before")
        #expect(field(#"{"kind":"session","value":"fam_1","client":"c"}"#) == "client")
    }

    @Test("RFC 3339 cut-offs are read as UTC instants")
    func rfc3339() throws {
        #expect(try RevocationInput.timestampMillis(.string("2026-01-01T00:00:00Z"), field: "before", nowMillis: 0) == 1_767_225_600_000)
        #expect(try RevocationInput.timestampMillis(.string("now"), field: "before", nowMillis: 42_123) == 42_123)
        #expect(try RevocationInput.timestampMillis(.string("2024-02-29T23:59:59-00:30"), field: "before", nowMillis: 0) == 1_709_252_999_000)
        #expect(try RevocationInput.timestampMillis(.string("1969-12-31T23:59:59.9999Z"), field: "before", nowMillis: 0) == -1)
        #expect(try RevocationInput.timestampMillis(.string("2016-12-31T23:59:60Z"), field: "before", nowMillis: 0) == 1_483_228_799_999)
    }

    @Test("an impossible RFC 3339 time is refused naming the field, never rolled over to another instant (2026-02-30, hour 24, offset +24:00)")
    func rfc3339Strict() throws {
        for text in ["2026-02-30T00:00:00Z", "2025-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z",
                     "2026-01-01T24:00:00Z", "2026-01-01T23:60:00Z", "2026-01-01T23:59:61Z", "2026-01-01T00:00:00+24:00",
                     "2026-01-01T00:00:00+01:60", "2026-01-01T00:00:00", "2026-01-01T00:00:00.Z", "2026-01-01T00:00:00Zjunk",
                     "2026-1-01T00:00:00Z", "+2026-01-01T00:00:00Z", "2026-01-01T00:00:00+0100"] {
            #expect(throws: APIError.self, "\(text)") { try RevocationInput.timestampMillis(.string(text), field: "before", nowMillis: 0) }
            if case .success(let millis) = RFC3339Time.millis(text) { Issue.record("\(text) read as \(millis)") }
        }
        // Every valid day of 400 years agrees with Foundation's reading of it.
        let formatter = ISO8601DateFormatter()
        for year in stride(from: 1900, through: 2300, by: 1) {
            for month in 1...12 {
                let day = RFC3339Time.daysIn(month: month, year: year)
                let text = String(format: "%04d-%02d-%02dT12:34:56Z", year, month, day)
                guard case .success(let millis) = RFC3339Time.millis(text), let date = formatter.date(from: text) else {
                    Issue.record("\(text) not read")
                    return
                }
                #expect(millis == Int64(date.timeIntervalSince1970) * 1000, "\(text)")
            }
        }
    }

    @Test("cut-offs keep their milliseconds from every input form, and until is their second rounded up")
    func millisecondCutoffInput() throws {
        #expect(try RevocationInput.timestampMillis(.string("2026-01-01T01:00:00.5+01:00"), field: "before", nowMillis: 0) == 1_767_225_600_500)
        #expect(try RevocationInput.timestampMillis(.string("2026-01-01T00:00:00.123Z"), field: "before", nowMillis: 0) == 1_767_225_600_123)
        #expect(try RevocationInput.timestampMillis(.number(1_767_225_600.007), field: "before", nowMillis: 0) == 1_767_225_600_007)
        #expect(try RevocationInput.timestampMillis(.integer(1_767_225_600), field: "before", nowMillis: 0) == 1_767_225_600_000)
        #expect(throws: APIError.self) { try RevocationInput.timestampMillis(.integer(.max / 100), field: "before", nowMillis: 0) }
        let now: Int64 = 1_800_000_000
        func parse(_ json: String, nowMillis: Int64 = now * 1000 + 250) throws -> RevocationInput {
            guard case .object(let members) = try JOSEJSONReader.parse(Array(json.utf8)) else { throw FixtureError("not an object") }
            return try RevocationInput.parse(members, now: now, nowMillis: nowMillis, maxTokenLifetime: .seconds(3600))
        }
        // The default is now to the millisecond; until is the next whole second.
        let defaulted = try parse(#"{"kind":"subject","value":"bob"}"#)
        #expect(defaulted.beforeMillis == now * 1000 + 250)
        #expect(defaulted.until == now + 1)
        // A cut-off on a whole second keeps that second.
        let whole = try parse(#"{"kind":"client","value":"c","before":1800000000}"#)
        #expect(whole.beforeMillis == 1_800_000_000_000)
        #expect(whole.until == 1_800_000_000)
        #expect(try parse(#"{"kind":"client","value":"c","before":1800000000.999}"#).until == 1_800_000_001)
    }

    @Test("refused admin calls get audit entries at the bucket's rate: a burst, then one a second; the next entry says how many were left out")
    func auditFailureBucket() {
        let clock = ManualNanos()
        let limiter = AuditFailureLimiter(burst: 3, perSecond: 1, now: { clock.value })
        #expect(limiter.admit() == .record(suppressedBefore: 0))
        #expect(limiter.admit() == .record(suppressedBefore: 0))
        #expect(limiter.admit() == .record(suppressedBefore: 0))
        #expect(limiter.admit() == .suppress)
        #expect(limiter.admit() == .suppress)
        clock.advance(seconds: 0.5)
        #expect(limiter.admit() == .suppress)
        clock.advance(seconds: 0.5)
        #expect(limiter.admit() == .record(suppressedBefore: 3))
        #expect(limiter.admit() == .suppress)
        // A long quiet spell refills no more than the burst.
        clock.advance(seconds: 3600)
        for _ in 0..<3 { if case .suppress = limiter.admit() { Issue.record("refused within the burst") } }
        #expect(limiter.admit() == .suppress)
    }

    @Test("introspection verifies with no leeway: inactive from exp on and while nbf lies ahead; revocation keeps the leeway")
    func introspectionHasNoLeeway() throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-introspect")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/c.yaml"
        try """
        cluster: {redis: redis://127.0.0.1:1, secret: \(Base64URL.encode([UInt8](repeating: 1, count: 32)))}
        admin_tokens: [{name: ops, sha256: \(Hex.sha256("x"))}]
        authorization_server: {issuer: "http://127.0.0.1:9000", audience: api}
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let config = try #require(try ControlConfig.load(file: file).authorizationServer)
        let signer = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "k1")
        let keys = KeySetStore()
        let document = Array(JSONWriter.serialize(["keys": .array([signer.key.publicJWK(keyID: "k1")])]).utf8)
        keys.replace(issuerName: config.name, keySet: try JWKSet.parse(document, issuer: config.issuerConfig, logger: nil), version: nil)
        let now: Int64 = 1_800_000_000
        let introspection = JWTVerifier(issuers: [config.introspectionIssuerConfig], keys: keys, cache: nil, now: { now })
        let revocation = JWTVerifier(issuers: [config.issuerConfig], keys: keys, cache: nil, now: { now })
        func token(_ extra: [String: JSONValue]) throws -> String {
            var claims: [String: JSONValue] = ["iss": .string(config.issuer), "aud": "api", "sub": "c", "client_id": "c",
                                               "iat": .integer(now - 60), "exp": .integer(now + 60)]
            for (key, value) in extra { claims[key] = value }
            return try signer.sign(claims: .object(claims))
        }
        func accepted(_ verifier: JWTVerifier, _ jwt: String) -> Bool {
            if case .success = verifier.verify(jwt) { return true }
            return false
        }
        #expect(accepted(introspection, try token([:])))
        #expect(accepted(introspection, try token(["exp": .integer(now + 1)])))
        #expect(!accepted(introspection, try token(["exp": .integer(now)])))      // expired at exp
        #expect(!accepted(introspection, try token(["nbf": .integer(now + 1)])))  // not yet valid
        #expect(accepted(introspection, try token(["nbf": .integer(now)])))
        #expect(accepted(revocation, try token(["exp": .integer(now)])))          // RFC 7009 keeps the leeway
        #expect(accepted(revocation, try token(["nbf": .integer(now + 1)])))
    }

    @Test("admin tokens: only the configured hashes match, wrong tokens of the right length or not are refused, the Bearer scheme is case-insensitive")
    func adminAuthenticator() {
        let authenticator = AdminAuthenticator(credentials: [
            AdminCredential(name: "ops", digest: Hex.decode(Hex.sha256("s3cret"))!),
            AdminCredential(name: "ci", digest: Hex.decode(Hex.sha256("other"))!),
        ])
        #expect(authenticator.authenticate(authorization: "Bearer s3cret")?.name == "ops")
        #expect(authenticator.authenticate(authorization: "bearer other")?.name == "ci")
        // Same length, one character off; cut short; extended.
        for wrong in ["s3creT", "s3cre", "s3cret0", "othes"] {
            #expect(authenticator.authenticate(authorization: "Bearer \(wrong)") == nil, "\(wrong)")
        }
        #expect(authenticator.authenticate(authorization: "Basic s3cret") == nil)
        #expect(authenticator.authenticate(authorization: "Bearer ") == nil)
        #expect(authenticator.authenticate(authorization: nil) == nil)
        // The comparison itself: equal digests match; one differing byte anywhere, or a stored
        // value of another length, does not.
        let digest = SHA256.hash(data: Array("s3cret".utf8))
        let bytes = Array(digest)
        #expect(AdminAuthenticator.digest(digest, matches: bytes))
        for index in [0, 15, 31] {
            var changed = bytes
            changed[index] ^= 0x01
            #expect(!AdminAuthenticator.digest(digest, matches: changed), "byte \(index)")
        }
        #expect(!AdminAuthenticator.digest(digest, matches: Array(bytes.dropLast())))
        #expect(!AdminAuthenticator.digest(digest, matches: bytes + [0]))
        #expect(!AdminAuthenticator.digest(digest, matches: []))
    }

    @Test("wait durations and scope requests")
    func waitAndScopes() throws {
        #expect(QueryInput.parseDuration("5s") == .seconds(5))
        #expect(QueryInput.parseDuration("250ms") == .milliseconds(250))
        #expect(QueryInput.parseDuration("1.5") == .milliseconds(1500))
        #expect(QueryInput.parseDuration("soon") == nil)
        #expect(QueryInput.parseDuration("-1s") == nil)
        // Beyond Int64's milliseconds: refused, not trapped on.
        #expect(QueryInput.parseDuration("1e300s") == nil && QueryInput.parseDuration("1e19") == nil && QueryInput.parseDuration("1e19ms") == nil)
        #expect(try AuthorizationServer.scopes(requested: nil, allowed: ["a", "b"]) == ["a", "b"])
        #expect(try AuthorizationServer.scopes(requested: "b b", allowed: ["a", "b"]) == ["b"])
        #expect(throws: APIError.self) { try AuthorizationServer.scopes(requested: "a c", allowed: ["a", "b"]) }
    }

    @Test("control config errors name file, line and key")
    func configErrors() throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-ctl-config")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func error(_ yaml: String) -> String {
            let file = directory + "/c.yaml"
            try? yaml.write(toFile: file, atomically: true, encoding: .utf8)
            do { _ = try ControlConfig.load(file: file); return "" } catch { return "\(error)" }
        }
        let cluster = "cluster: {redis: redis://127.0.0.1:1, secret: \(Base64URL.encode([UInt8](repeating: 1, count: 32)))}\n"
        let tokens = "admin_tokens: [{name: ops, sha256: \(Hex.sha256("x"))}]\n"
        #expect(error(cluster + tokens).isEmpty)
        #expect(error(cluster).contains("admin_tokens: missing required key"))
        #expect(error(cluster + "admin_tokens: [{name: ops, sha256: abc}]\n").contains("c.yaml:2:"))
        #expect(error(cluster + "admin_tokens: [{name: ops, sha256: abc}]\n").contains("admin_tokens[0].sha256"))
        #expect(error(cluster + tokens + "admin_listn: 1.2.3.4:5\n").contains("c.yaml:3:1: admin_listn: unknown key"))
        #expect(error(cluster + tokens + "listen: nowhere\n").contains("listen: expected host:port"))
        let authServer = "authorization_server:\n  issuer: http://127.0.0.1:9000/\n  audience: a\n"
        #expect(error(cluster + tokens + authServer).contains("authorization_server.issuer"))
        let badGrant = "authorization_server:\n  issuer: http://127.0.0.1:9000\n  audience: a\n  clients:\n    - {client_id: c, secret_sha256: \(Hex.sha256("s")), grant_types: [password]}\n"
        #expect(error(cluster + tokens + badGrant).contains("grant_types: unsupported grant type 'password'"))
        let noSource = "issuers:\n  - {name: ext, issuer: https://ext, audiences: [a], algorithms: [ES256]}\n"
        #expect(error(cluster + tokens + noSource).contains("issuers[0]"))
        let hmac = "authorization_server:\n  issuer: http://127.0.0.1:9000\n  audience: a\n  algorithm: HS256\n"
        #expect(error(cluster + tokens + hmac).contains("authorization_server.algorithm"))
        let client = "authorization_server:\n  issuer: http://127.0.0.1:9000\n  audience: a\n  clients:\n    - {client_id: rs, secret_sha256: \(Hex.sha256("s")), introspect_any: "
        #expect(error(cluster + tokens + client + "true}\n").isEmpty)
        #expect(error(cluster + tokens + client + "yes please}\n").contains("c.yaml:7:"))
        #expect(error(cluster + tokens + client + "yes please}\n").contains("authorization_server.clients[0].introspect_any"))
        try (cluster + tokens + client + "true}\n").write(toFile: directory + "/c.yaml", atomically: true, encoding: .utf8)
        #expect(try ControlConfig.load(file: directory + "/c.yaml").authorizationServer?.clients.first?.introspectAny == true)
        try (cluster + tokens + authServer.replacingOccurrences(of: "9000/", with: "9000") + "  clients: [{client_id: c, secret_sha256: \(Hex.sha256("s"))}]\n")
            .write(toFile: directory + "/c.yaml", atomically: true, encoding: .utf8)
        #expect(try ControlConfig.load(file: directory + "/c.yaml").authorizationServer?.clients.first?.introspectAny == false)
    }

    @Test("signing-key records round-trip, and a sealed key opens only under its kid")
    func sealedKeys() throws {
        let kek = KeyEncryptionKey(bytes: [UInt8](repeating: 3, count: 32))
        let key = try SigningKey.generate(.ES256)
        var record = SigningKeyRecord(kid: "k1", algorithm: .ES256, state: .active, createdMillis: 5, sealed: "")
        record.sealed = try kek.seal(key.exportPrivate(), context: record.sealContext)
        record.activatedMillis = 6
        record.revision = 7
        let mac = ClusterMAC(secret: [UInt8](repeating: 1, count: 32), cluster: "portcullis:")
        let json = record.json(mac: mac)
        let decoded = try #require(SigningKeyRecord(json: json, field: "k1", mac: mac))
        #expect(decoded == record)
        // The MAC covers the state and the kid's slot; another cluster's secret does not verify it.
        #expect(SigningKeyRecord(json: json.replacingOccurrences(of: "\"active\"", with: "\"retiring\""), field: "k1", mac: mac) == nil)
        #expect(SigningKeyRecord(json: json, field: "k2", mac: mac) == nil)
        #expect(SigningKeyRecord(json: json, field: "k1", mac: ClusterMAC(secret: [UInt8](repeating: 2, count: 32), cluster: "portcullis:")) == nil)
        #expect(kek.unseal(decoded.sealed, context: decoded.sealContext) == key.exportPrivate())
        var moved = decoded
        moved.kid = "k2"
        #expect(kek.unseal(moved.sealed, context: moved.sealContext) == nil)
        #expect(KeyEncryptionKey(bytes: [UInt8](repeating: 4, count: 32)).unseal(decoded.sealed, context: decoded.sealContext) == nil)
    }
}

/// A monotonic clock tests move by hand.
final class ManualNanos: Sendable {
    private let nanos = Atomic<UInt64>(1_000_000_000)
    var value: UInt64 { nanos.load(ordering: .relaxed) }
    func advance(seconds: Double) { nanos.add(UInt64(seconds * 1e9), ordering: .relaxed) }
}
