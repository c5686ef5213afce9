import Foundation
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
