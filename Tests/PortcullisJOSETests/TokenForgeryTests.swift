import Crypto
import Foundation
@testable import PortcullisJOSE
import PortcullisTestSupport
import Testing

/// An attacker who holds a valid token, or a key of their own, and shapes the token's bytes and
/// header to get past the verifier (RFC 8725 §3.4, §3.10).
@Suite("tokens forged through their own bytes and header")
struct TokenForgeryTests {
    static let keys: (rsa: SigningKey, ed25519: SigningKey, es256: SigningKey)? = try? (.generate(.RS256), .generate(.EdDSA), .generate(.ES256))

    static func verifier(_ signers: [JWTSigner], algorithms: [JWSAlgorithm]) throws -> JWTVerifier {
        let issuer = Fixture.issuerConfig(algorithms: algorithms)
        let store = KeySetStore()
        store.replace(issuerName: "main", keySet: try JWKSet.parse(Fixture.jwks(signers), issuer: issuer, logger: nil), version: "v1")
        return JWTVerifier(issuers: [issuer], keys: store, cache: nil, now: { Fixture.now })
    }

    /// `token` with its signature bytes replaced by `change(signature)`.
    static func resigned(_ token: String, _ change: ([UInt8]) -> [UInt8]) throws -> String {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        let signature = try #require(Base64URL.decode(parts[2]))
        return parts[0] + "." + parts[1] + "." + Base64URL.encode(change(signature))
    }

    @Test("an RSA signature with a leading zero byte, or one byte short, is refused as bad_signature although it encodes the same number")
    func rsaSignatureLength() throws {
        let signer = JWTSigner(key: try #require(Self.keys?.rsa), keyID: "rsa")
        let verifier = try Self.verifier([signer], algorithms: [.RS256])
        let token = try signer.sign(claims: Fixture.claims())
        #expect(verifier.verify(token).value != nil)
        #expect(verifier.verify(try Self.resigned(token) { [0] + $0 }).reason == .badSignature)
        // A signature whose first byte is zero, without it (re-signed until one is: about 1 in 256).
        var shortened: String?
        for attempt in 0..<4096 where shortened == nil {
            let candidate = try signer.sign(claims: Fixture.claims(["jti": .string("j-\(attempt)")]))
            let signature = try #require(Base64URL.decode(candidate.split(separator: ".")[2]))
            if signature[0] == 0 { shortened = try Self.resigned(candidate) { Array($0.dropFirst()) } }
        }
        let short = try #require(shortened)
        #expect(verifier.verify(short).reason == .badSignature)
    }

    @Test("an Ed25519 signature with S replaced by S + L (a malleated copy the curve arithmetic would accept) is refused as bad_signature")
    func ed25519Malleability() throws {
        let signer = JWTSigner(key: try #require(Self.keys?.ed25519), keyID: "ed")
        let verifier = try Self.verifier([signer], algorithms: [.EdDSA])
        let token = try signer.sign(claims: Fixture.claims())
        #expect(verifier.verify(token).value != nil)
        // L = 2^252 + 27742317777372353535851937790883648493, little-endian like S.
        let order: [UInt8] = [0xED, 0xD3, 0xF5, 0x5C, 0x1A, 0x63, 0x12, 0x58, 0xD6, 0x9C, 0xF7, 0xA2, 0xDE, 0xF9, 0xDE, 0x14,
                              0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]
        let malleated = try Self.resigned(token) { signature in
            var out = Array(signature[0..<32])
            var carry = 0
            for index in 0..<32 {
                let sum = Int(signature[32 + index]) + Int(order[index]) + carry
                out.append(UInt8(sum & 0xFF))
                carry = sum >> 8
            }
            return out
        }
        #expect(malleated != token)
        #expect(verifier.verify(malleated).reason == .badSignature)
    }

    @Test("a token signed by the attacker's key and carrying that key's certificate in x5c is refused: unknown_kid under the attacker's kid, bad_signature under the real one or none")
    func x5cIgnored() throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-x5c")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let made = try runCommand("/usr/bin/env", ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                                   "-keyout", directory + "/key.pem", "-out", directory + "/cert.pem", "-subj", "/CN=attacker", "-days", "1"])
        #expect(made.status == 0, "\(made.stderr)")
        let attackerKey = try P256.Signing.PrivateKey(pemRepresentation: String(contentsOfFile: directory + "/key.pem", encoding: .utf8))
        let certificate = try String(contentsOfFile: directory + "/cert.pem", encoding: .utf8)
            .split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        let real = JWTSigner(key: try #require(Self.keys?.es256), keyID: "real")
        let verifier = try Self.verifier([real], algorithms: [.ES256])
        let header: [String: JSONValue] = ["x5c": .array([.string(certificate)])]
        let underOwnKID = try JWTSigner(key: .p256(attackerKey), keyID: "attacker").sign(claims: Fixture.claims(), extraHeader: header)
        #expect(verifier.verify(underOwnKID).reason == .unknownKeyID)
        let underRealKID = try JWTSigner(key: .p256(attackerKey), keyID: "real").sign(claims: Fixture.claims(), extraHeader: header)
        #expect(verifier.verify(underRealKID).reason == .badSignature)
        let withoutKID = try JWTSigner(key: .p256(attackerKey), keyID: "real").sign(claims: Fixture.claims(), extraHeader: header.merging(["kid": .null]) { $1 })
        #expect(verifier.verify(withoutKID).reason == .badSignature)
    }

    @Test("jku and x5u pointing at the attacker's own key server are never fetched: the unknown kid refetches the configured JWKS only, and the token stays refused")
    func jkuNeverFetched() async throws {
        let configured = try await JWKSServer(), attacker = try await JWKSServer()
        let real = JWTSigner(key: try #require(Self.keys?.es256), keyID: "real")
        let evil = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "evil")
        configured.update { $0.jwks = Fixture.jwks([real]) }
        attacker.update { $0.jwks = Fixture.jwks([evil, JWTSigner(key: evil.key, keyID: "real")]) }
        let h = RemoteKeySetTests.harness(configured, policy: RemoteKeySetTests.policy(throttle: .milliseconds(50)))
        try await h.loader.loadInitial()
        #expect(configured.requests == 1)
        let header: [String: JSONValue] = ["jku": .string(attacker.jwksURL), "x5u": .string(attacker.jwksURL)]
        let forged = try evil.sign(claims: Fixture.claims(), extraHeader: header)
        #expect(h.verifier.verify(forged).reason == .unknownKeyID)
        #expect(await RemoteKeySetTests.eventually { configured.requests == 2 }, "the unknown kid should refetch the configured set")
        try await Task.sleep(for: .milliseconds(300))
        #expect(h.verifier.verify(forged).reason == .unknownKeyID)
        let underRealKID = try JWTSigner(key: evil.key, keyID: "real").sign(claims: Fixture.claims(), extraHeader: header)
        #expect(h.verifier.verify(underRealKID).reason == .badSignature)
        try await Task.sleep(for: .milliseconds(300))
        #expect(attacker.requests == 0, "the attacker's key server was asked \(attacker.requests) times")
        try await configured.stop()
        try await attacker.stop()
    }
}
