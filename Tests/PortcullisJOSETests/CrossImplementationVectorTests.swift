import Foundation
@testable import PortcullisJOSE
import PortcullisTestSupport
import Testing

/// Tokens minted by joserfc (an independent implementation) and hostile tokens built by hand,
/// from `Vectors/generate_vectors.py`. The clock is pinned to the generator's `now`.
@Suite("cross-implementation vectors (joserfc)")
struct CrossImplementationVectorTests {
    struct Vectors {
        let now: Int64
        let jwks: [UInt8]
        let issuer: IssuerConfig
        let tokens: [(name: String, token: String, expect: String)]
    }

    static func load(_ path: String = Fixture.vectorsDirectory + "/vectors.json") throws -> Vectors {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let document = try JOSEJSONReader.parse([UInt8](data))
        let now = try #require(document["now"]?.int64Value)
        let jwks = Array(JSONWriter.serialize(try #require(document["jwks"])).utf8)
        var secrets: [IssuerConfig.HMACKey] = []
        for item in try #require(document["hmac_secrets"]?.arrayValue) {
            let algText = try #require(item["alg"]?.stringValue)
            let alg = try #require(JWSAlgorithm(rawValue: algText))
            let secretText = try #require(item["secret_base64url"]?.stringValue)
            let secret = try #require(Base64URL.decode(secretText))
            secrets.append(.init(keyID: try #require(item["kid"]?.stringValue), secret: secret, algorithm: alg))
        }
        let issuer = Fixture.issuerConfig(hmacKeys: secrets)
        let tokens = try #require(document["tokens"]?.arrayValue).map { item in
            (item["name"]?.stringValue ?? "?", item["token"]?.stringValue ?? "", item["expect"]?.stringValue ?? "?")
        }
        return Vectors(now: now, jwks: jwks, issuer: issuer, tokens: tokens)
    }

    @Test("every committed vector verifies or is rejected with the expected reason")
    func committedVectors() throws {
        try check(try Self.load())
    }

    /// Runs the generator (python3 with joserfc, installed by cluster/setup.sh) for fresh keys and tokens.
    @Test("a freshly generated vector set behaves the same")
    func freshVectors() throws {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("vectors-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: output) }
        let result = try runCommand("/usr/bin/env", ["python3", Fixture.vectorsDirectory + "/generate_vectors.py", output])
        try #require(result.status == 0, "generator failed: \(result.stderr)")
        try check(try Self.load(output))
    }

    func check(_ vectors: Vectors) throws {
        let keySet = try JWKSet.parse(vectors.jwks, issuer: vectors.issuer, logger: nil)
        let store = KeySetStore()
        store.replace(issuerName: "main", keySet: keySet, version: nil)
        let now = vectors.now
        let verifier = JWTVerifier(issuers: [vectors.issuer], keys: store, cache: nil, now: { now })
        #expect(vectors.tokens.count > 70)
        var validAlgorithms = Set<JWSAlgorithm>()
        for vector in vectors.tokens {
            let result = verifier.verify(vector.token)
            switch result {
            case .success(let token):
                #expect(vector.expect == "valid", "\(vector.name): accepted, expected \(vector.expect)")
                #expect(token.subject == "user-1")
                validAlgorithms.insert(token.algorithm)
            case .failure(let rejection):
                #expect(rejection.reason.rawValue == vector.expect, "\(vector.name): \(rejection)")
                #expect(!rejection.detail.contains(vector.token.prefix(20)), "\(vector.name): detail echoes the token")
            }
        }
        #expect(validAlgorithms == Set(JWSAlgorithm.allCases), "every algorithm has a joserfc-minted token that verifies")
    }

    @Test("the encryption key and the 1024-bit key are skipped with reasons; the rest load")
    func skippedKeys() throws {
        let vectors = try Self.load()
        let keySet = try JWKSet.parse(vectors.jwks, issuer: vectors.issuer, logger: nil)
        #expect(keySet.count == 12)  // 9 asymmetric + 3 configured HMAC secrets
        let reasons = Dictionary(uniqueKeysWithValues: keySet.skipped.compactMap { skip in skip.keyID.map { ($0, skip.reason) } })
        #expect(reasons["enc"]?.contains("use") == true)
        #expect(reasons["weak"]?.contains("2048") == true)
    }

    @Test("the same tokens fail once the clock passes exp")
    func clockMatters() throws {
        let vectors = try Self.load()
        let store = KeySetStore()
        store.replace(issuerName: "main", keySet: try JWKSet.parse(vectors.jwks, issuer: vectors.issuer, logger: nil), version: nil)
        let later = vectors.now + 3600 + 31
        let verifier = JWTVerifier(issuers: [vectors.issuer], keys: store, cache: nil, now: { later })
        for vector in vectors.tokens where vector.expect == "valid" && vector.name.hasPrefix("joserfc") {
            #expect(verifier.verify(vector.token).reason == .expired, "\(vector.name)")
        }
    }
}
