import Foundation
import PortcullisJOSE
import PortcullisTestSupport
import Testing

/// `portcullis token verify|inspect` through the real binary (`PortcullisBinary.path`).
@Suite("portcullis token command")
struct TokenCLITests {
    struct Workspace {
        let directory: URL
        let config: String
        let es: JWTSigner
        let rs: JWTSigner
    }

    static func workspace(issuerExtra: String = "", source: String = "jwks_file: keys/jwks.json") throws -> Workspace {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("jose-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("keys"), withIntermediateDirectories: true)
        let es = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "es1")
        let rs = JWTSigner(key: try SigningKey.generate(.RS256), keyID: "rs1")
        try Data(Fixture.jwks([es, rs])).write(to: directory.appendingPathComponent("keys/jwks.json"))
        let yaml = """
        listen: 127.0.0.1:0
        routes: [{path: /ignored}]
        issuers:
          - name: main
            issuer: \(Fixture.issuer)
            audiences: [\(Fixture.audience)]
            algorithms: [ES256, RS256]
            \(source)
        \(issuerExtra)
        """
        let config = directory.appendingPathComponent("gateway.yaml").path
        try Data(yaml.utf8).write(to: URL(fileURLWithPath: config))
        return Workspace(directory: directory, config: config, es: es, rs: rs)
    }

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970) }

    static func lines(_ output: String) throws -> [JSONValue] {
        try output.split(separator: "\n").map { try JOSEJSONReader.parse(Array($0.utf8)) }
    }

    @Test("verify prints one JSON line per token in input order; exit 1 when any is invalid")
    func verifyMixed() throws {
        let w = try Self.workspace()
        defer { try? FileManager.default.removeItem(at: w.directory) }
        let now = Self.now()
        let good = try w.es.sign(claims: Fixture.claims(now: now))
        let expired = try w.rs.sign(claims: Fixture.claims(["exp": .integer(now - 3600)], now: now))
        let wrongAudience = try w.rs.sign(claims: Fixture.claims(["aud": "api://other"], now: now))
        let result = try runCommand(PortcullisBinary.path, ["token", "verify", "--config", w.config, good, expired, wrongAudience, "garbage"])
        #expect(result.status == 1, "\(result.stderr)")
        let lines = try Self.lines(result.stdout)
        #expect(lines.count == 4)
        guard lines.count == 4 else { return }
        #expect(lines[0]["valid"] == true && lines[0]["reason"] == .null)
        #expect(lines[0]["kid"] == "es1" && lines[0]["sub"] == "user-1" && lines[0]["issuer"] == .string(Fixture.issuer))
        #expect(lines[0]["exp"] == .integer(now + 600))
        #expect(lines[1]["valid"] == false && lines[1]["reason"] == "expired" && lines[1]["kid"] == "rs1")
        #expect(lines[2]["reason"] == "wrong_audience")
        #expect(lines[3]["reason"] == "malformed" && lines[3]["kid"] == .null)
        for line in lines.dropFirst() { #expect(line["detail"]?.stringValue?.isEmpty == false) }
    }

    @Test("verify reads standard input one token per line; exit 0 when all are valid")
    func verifyStandardInput() throws {
        let w = try Self.workspace()
        defer { try? FileManager.default.removeItem(at: w.directory) }
        let tokens = try [w.es, w.rs, w.es].map { try $0.sign(claims: Fixture.claims(now: Self.now())) }
        let result = try runCommand(PortcullisBinary.path, ["token", "verify", "--config", w.config], stdin: tokens.joined(separator: "\n") + "\n\n")
        #expect(result.status == 0, "\(result.stderr)")
        let lines = try Self.lines(result.stdout)
        #expect(lines.map { $0["valid"] } == [true, true, true])
        #expect(lines.map { $0["kid"] } == ["es1", "rs1", "es1"])
    }

    @Test("configuration and usage errors exit 2; configuration errors name file:line:key")
    func errors() throws {
        let w = try Self.workspace(issuerExtra: "    leeway: 5")
        defer { try? FileManager.default.removeItem(at: w.directory) }
        let bad = try runCommand(PortcullisBinary.path, ["token", "verify", "--config", w.config, "x"])
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("gateway.yaml:9:"), "\(bad.stderr)")
        #expect(bad.stderr.contains("issuers[0].leeway"), "\(bad.stderr)")
        #expect(bad.stdout.isEmpty)
        let noConfig = try runCommand(PortcullisBinary.path, ["token", "verify", "x"])
        #expect(noConfig.status == 2)
        let unknownOption = try runCommand(PortcullisBinary.path, ["token", "verify", "--config", w.config, "--bogus", "x"])
        #expect(unknownOption.status == 2)
    }

    @Test("remote issuers are fetched once before verifying")
    func remote() async throws {
        let server = try await JWKSServer()
        let signer = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "remote1")
        server.update { $0.jwks = Fixture.jwks([signer]) }
        let w = try Self.workspace(source: "jwks_uri: \(server.jwksURL)")
        defer { try? FileManager.default.removeItem(at: w.directory) }
        let token = try signer.sign(claims: Fixture.claims(now: Self.now()))
        let result = try runCommand(PortcullisBinary.path, ["token", "verify", "--config", w.config, token])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try Self.lines(result.stdout).first?["kid"] == "remote1")
        #expect(server.requests == 1)
        try await server.stop()
    }

    @Test("inspect decodes header and claims, labelled UNVERIFIED")
    func inspect() throws {
        let signer = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "k9")
        let token = try signer.sign(claims: Fixture.claims(["sub": "alice"], now: Self.now()))
        let result = try runCommand(PortcullisBinary.path, ["token", "inspect", token])
        #expect(result.status == 0)
        #expect(result.stdout.hasPrefix("UNVERIFIED"))
        #expect(result.stdout.contains(#""kid":"k9""#) && result.stdout.contains(#""sub":"alice""#))
        let broken = try runCommand(PortcullisBinary.path, ["token", "inspect", "a.b"])
        #expect(broken.status == 1)
    }
}
