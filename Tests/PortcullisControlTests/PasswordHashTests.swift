import Foundation
import PortcullisJOSE
@testable import PortcullisControl
import PortcullisTestSupport
import Testing

@Suite("authorization server users: scrypt password hashes and the users file")
struct PasswordHashTests {
    @Test("the KDF is scrypt: RFC 7914 §12's third test vector")
    func rfc7914Vector() throws {
        let key = try PasswordHash.derive(password: "pleaseletmein", salt: Array("SodiumChloride".utf8), logN: 14, r: 8, p: 1, length: 64)
        #expect(Hex.encode(key) == "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887")
    }

    @Test("a hash round-trips through its encoded form, carries its parameters and matches only its password")
    func roundTrip() throws {
        let hash = try PasswordHash.make(password: "correct horse")
        let text = hash.description
        #expect(text.hasPrefix("$scrypt$ln=17,r=8,p=1$"))
        let parsed = try PasswordHash(encoded: text)
        #expect(parsed == hash)
        #expect(parsed.salt.count == 16)
        #expect(parsed.matches("correct horse"))
        #expect(!parsed.matches("correct horsf"))
        #expect(PasswordHash.constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(!PasswordHash.constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!PasswordHash.constantTimeEqual([1, 2, 3], [1, 2]))
    }

    @Test("hashes below OWASP's scrypt minimum (N=2^17, r=8, p=1), beyond 1 GiB or malformed are refused with a reason", arguments: [
        ("$scrypt$ln=16,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$c2FsdHNhbHRzYWx0c2FsdA", "below the minimum"),
        ("$scrypt$ln=17,r=4,p=1$c2FsdHNhbHRzYWx0c2FsdA$c2FsdHNhbHRzYWx0c2FsdA", "below the minimum"),
        ("$scrypt$ln=21,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$c2FsdHNhbHRzYWx0c2FsdA", "1 GiB"),
        ("$scrypt$ln=17,r=8$c2FsdHNhbHRzYWx0c2FsdA$c2FsdHNhbHRzYWx0c2FsdA", "must name ln, r and p"),
        ("$scrypt$ln=17,r=8,p=1$c2FsdA$c2FsdHNhbHRzYWx0c2FsdA", "salt"),
        ("$scrypt$ln=17,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$c2FsdHNhbHRzYWx0c2FsdA==", "key"),
        ("$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$a2V5", "expected $scrypt$"),
        ("correct horse", "expected $scrypt$"),
    ])
    func refused(_ text: String, _ reason: String) {
        #expect(throws: PasswordHash.FormatError.self) { try PasswordHash(encoded: text) }
        do {
            _ = try PasswordHash(encoded: text)
        } catch {
            #expect(error.description.contains(reason), "\(error.description)")
        }
    }

    @Test("an unknown username costs the same KDF time as a wrong password, so timing does not tell which users exist")
    func unknownUserCostsTheKDF() async throws {
        let directory = UserDirectory(users: [.init(username: "alice", passwordHash: try PasswordHash.make(password: "pw-alice"), claims: [:])])
        #expect(await directory.authenticate(username: "alice", password: "pw-alice")?.username == "alice")
        let clock = ContinuousClock()
        let wrong = try await clock.measure { #expect(await directory.authenticate(username: "alice", password: "nope") == nil) }
        let unknown = try await clock.measure { #expect(await directory.authenticate(username: "mallory", password: "nope") == nil) }
        // The KDF takes hundreds of milliseconds; skipping it would take microseconds.
        #expect(unknown > wrong / 2, "unknown user \(unknown), wrong password \(wrong)")
        #expect(unknown > .milliseconds(50), "unknown user \(unknown)")
    }

    /// The build before checked an unknown name against the default cost always: once the file's
    /// cost was raised, a wrong password took about 5 s longer than an unknown name (an attacker
    /// review).
    @Test("an unknown username is checked against a decoy of the cost most users' hashes have (the costliest of equally common ones), and mixed costs are counted")
    func decoyTakesTheUsersCost() throws {
        func user(_ name: String, logN: Int) -> UserDirectory.User {
            .init(username: name, passwordHash: PasswordHash(logN: logN, r: 8, p: 1, salt: Array(repeating: 1, count: 16), key: Array(repeating: 2, count: 32)), claims: [:])
        }
        let raised = UserDirectory(users: [user("a", logN: 18), user("b", logN: 18), user("c", logN: 17)])
        #expect(raised.decoy.logN == 18 && raised.decoy.r == 8 && raised.decoy.p == 1)
        #expect(raised.costs == 2)
        #expect(UserDirectory(users: [user("a", logN: 17), user("b", logN: 19)]).decoy.logN == 19)
        let one = UserDirectory(users: [user("a", logN: 17)])
        #expect(one.decoy.logN == 17 && one.costs == 1)
        #expect(UserDirectory(users: []).decoy.logN == PasswordHash.defaultLogN)
    }

    @Test("the users file: claims become token claims; reserved claims, duplicate users and weak hashes are refused naming the line")
    func usersFile() throws {
        let folder = try TemporaryDirectory.make(prefix: "portcullis-users")
        let hash = try PasswordHash.make(password: "pw").description
        let good = folder + "/users.yaml"
        try """
        users:
          - username: alice
            password_hash: \(hash)
            claims: {roles: [orders-reader, orders-writer], tenant: acme}
          - {username: bob, password_hash: "\(hash)"}
        """.write(toFile: good, atomically: true, encoding: .utf8)
        let directory = try UserDirectory.load(file: good)
        #expect(directory.users["alice"]?.claims == ["roles": .array([.string("orders-reader"), .string("orders-writer")]), "tenant": .string("acme")])
        #expect(directory.users["bob"]?.claims == [:])

        for (yaml, message) in [
            ("users:\n  - {username: a, password_hash: \"\(hash)\", claims: {sub: root}}", "users.yaml:2"),
            ("users:\n  - {username: a, password_hash: \"\(hash)\"}\n  - {username: a, password_hash: \"\(hash)\"}", "duplicate username"),
            ("users:\n  - {username: a, password_hash: \"$scrypt$ln=10,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$c2FsdHNhbHRzYWx0c2FsdA\"}", "below the minimum"),
            ("users:\n  - {username: a, password: plain}", "password_hash: missing required key"),
        ] {
            try yaml.write(toFile: folder + "/users.yaml", atomically: true, encoding: .utf8)
            #expect(throws: (any Error).self) { try UserDirectory.load(file: good) }
            do {
                _ = try UserDirectory.load(file: good)
            } catch {
                #expect("\(error)".contains(message), "\(error)")
            }
        }
    }
}

@Suite("control config: public clients, redirect URIs and the users file")
struct AuthorizationCodeConfigTests {
    @Test("public clients, redirect URIs, users_file and login_throttle are checked; every mistake names file, line and key")
    func configuration() throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-code-config")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "users:\n  - {username: alice, password_hash: \"\(try PasswordHash.make(password: "pw"))\"}\n"
            .write(toFile: directory + "/users.yaml", atomically: true, encoding: .utf8)
        let file = directory + "/c.yaml"
        func load(issuer: String = "http://127.0.0.1:9000", _ body: String) throws -> ControlConfig {
            try """
            cluster: {redis: redis://127.0.0.1:1, secret: \(Base64URL.encode([UInt8](repeating: 1, count: 32)))}
            admin_tokens: [{name: ops, sha256: \(Hex.sha256("x"))}]
            authorization_server:
              issuer: \(issuer)
              audience: a
            \(body)
            """.write(toFile: file, atomically: true, encoding: .utf8)
            return try ControlConfig.load(file: file)
        }
        func error(issuer: String = "http://127.0.0.1:9000", _ body: String) -> String {
            do { _ = try load(issuer: issuer, body); return "" } catch { return "\(error)" }
        }
        let good = try load("""
          users_file: users.yaml
          login_throttle: {per_user: 3, per_address: 9, window: 5m}
          clients:
            - {client_id: web, public: true, redirect_uris: ["https://app.example/cb", "http://127.0.0.1:8080/cb"], grant_types: [authorization_code, refresh_token]}
        """)
        let web = try #require(good.authorizationServer?.clients.first)
        #expect(web.isPublic && web.redirectURIs == ["https://app.example/cb", "http://127.0.0.1:8080/cb"])
        #expect(good.authorizationServer?.userCount == 1)
        #expect(good.authorizationServer?.loginThrottle == LoginThrottle.Limits(perUser: 3, perAddress: 9, window: .seconds(300)))
        #expect(good.authorizationServer?.refreshTokenMaxLifetime == .seconds(30 * 86_400), "the default: 30 days")
        #expect(try load("  refresh_token_max_lifetime: 0").authorizationServer?.refreshTokenMaxLifetime == nil)

        let client = "  users_file: users.yaml\n  clients:\n    - "
        for (body, message) in [
            (client + "{client_id: web, public: true, secret_sha256: \(Hex.sha256("s")), redirect_uris: [\"https://a/cb\"]}", "a public client has no secret and no certificate"),
            (client + "{client_id: web, public: true, redirect_uris: [\"https://a/cb\"], grant_types: [client_credentials]}", "cannot use client_credentials"),
            (client + "{client_id: web, public: true}", "needs redirect_uris"),
            (client + "{client_id: web, public: true, redirect_uris: [\"http://app.example/cb\"]}", "must use https"),
            // Host names that merely start like a loopback address are names anyone can point
            // anywhere (the build before took them for loopback: an attacker review).
            (client + "{client_id: web, public: true, redirect_uris: [\"http://127.0.0.1.nip.io/cb\"]}", "must use https"),
            (client + "{client_id: web, public: true, redirect_uris: [\"http://127.attacker.example/cb\"]}", "must use https"),
            (client + "{client_id: web, public: true, redirect_uris: [\"https://a/cb#x\"]}", "without a fragment"),
            (client + "{client_id: web, public: true, redirect_uris: [\"https://a/cb\"], grant_types: [implicit]}", "implicit and password are not offered"),
            ("  clients:\n    - {client_id: web, public: true, redirect_uris: [\"https://a/cb\"]}", "needs users_file"),
            (client + "{client_id: web, public: true, redirect_uris: [\"https://a/cb\"], introspect_any: true}", "cannot be a resource server"),
            ("  users_file: nowhere.yaml", "does not exist"),
            ("  users_file: users.yaml\n  login_throttle: {per_user: 0}", "login_throttle.per_user"),
            ("  refresh_token_max_lifetime: 500ms", "refresh_token_max_lifetime: must be at least 1s, or 0 for no bound"),
        ] {
            let text = error(body)
            #expect(text.contains(message), "\(body)\n→ \(text)")
            #expect(text.contains("c.yaml"), "\(text)")
        }
        // The session cookie is Secure: an http issuer only on loopback.
        #expect(error(issuer: "http://control.example:9000", "  users_file: users.yaml").contains("needs an https issuer"))
        #expect(error(issuer: "http://127.attacker.example:9000", "  users_file: users.yaml").contains("needs an https issuer"))
        for loopback in ["127.0.0.1", "127.255.3.9", "[::1]", "localhost"] {
            #expect(AuthorizationServerConfig.isLoopback(loopback), "\(loopback)")
        }
        for name in ["127.0.0.1.nip.io", "127.attacker.example", "127.1", "0127.0.0.1", "[::ffff:127.0.0.1]", "1.127.0.0.1"] {
            #expect(!AuthorizationServerConfig.isLoopback(name), "\(name)")
        }
        #expect(error(issuer: "https://control.example", "  users_file: users.yaml").isEmpty)
    }
}
