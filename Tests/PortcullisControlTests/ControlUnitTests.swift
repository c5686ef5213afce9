import Foundation
import PortcullisCluster
import PortcullisJOSE
@testable import PortcullisControl
import PortcullisTestSupport
import Testing

@Suite("control plane: pure logic")
struct ControlUnitTests {
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
        #expect(try parse(#"{"kind":"client","value":"c","before":"2027-01-15T08:00:00Z"}"#).until == 1_800_000_000)
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
        #expect(field(#"{"kind":"key","value":"k","exp":1900000000}"#) == "exp")
    }

    @Test("RFC 3339 cut-offs are read as UTC instants")
    func rfc3339() throws {
        #expect(try RevocationInput.timestamp(.string("2026-01-01T00:00:00Z"), field: "before", now: 0) == 1_767_225_600)
        #expect(try RevocationInput.timestamp(.string("2026-01-01T01:00:00.5+01:00"), field: "before", now: 0) == 1_767_225_600)
        #expect(try RevocationInput.timestamp(.string("now"), field: "before", now: 42) == 42)
    }

    @Test("admin tokens: only the configured hashes match, the Bearer scheme is case-insensitive")
    func adminAuthenticator() {
        let authenticator = AdminAuthenticator(credentials: [
            AdminCredential(name: "ops", digest: Hex.decode(Hex.sha256("s3cret"))!),
            AdminCredential(name: "ci", digest: Hex.decode(Hex.sha256("other"))!),
        ])
        #expect(authenticator.authenticate(authorization: "Bearer s3cret")?.name == "ops")
        #expect(authenticator.authenticate(authorization: "bearer other")?.name == "ci")
        #expect(authenticator.authenticate(authorization: "Bearer s3cre") == nil)
        #expect(authenticator.authenticate(authorization: "Basic s3cret") == nil)
        #expect(authenticator.authenticate(authorization: "Bearer ") == nil)
        #expect(authenticator.authenticate(authorization: nil) == nil)
        #expect(AdminAuthenticator.constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!AdminAuthenticator.constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!AdminAuthenticator.constantTimeEquals([1, 2], [1, 2, 3]))
    }

    @Test("wait durations and scope requests")
    func waitAndScopes() throws {
        #expect(QueryInput.parseDuration("5s") == .seconds(5))
        #expect(QueryInput.parseDuration("250ms") == .milliseconds(250))
        #expect(QueryInput.parseDuration("1.5") == .milliseconds(1500))
        #expect(QueryInput.parseDuration("soon") == nil)
        #expect(QueryInput.parseDuration("-1s") == nil)
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
