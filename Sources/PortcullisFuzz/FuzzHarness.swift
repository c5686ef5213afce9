import PortcullisJOSE

/// What one fuzz input is run through: the strict JSON reader, the base64url decoder, the JWK set
/// parser, the unverified decoder and the full verifier (with a cache). Besides "no crash", it
/// checks properties that would expose real bugs:
/// - JSON: whatever parses re-serializes to text that parses back to the same value;
/// - base64url: whatever decodes re-encodes to exactly the input (one encoding per byte string);
/// - verifier: a token that verifies must carry a header and claims this harness signed itself
///   (so no mutation can authenticate new content), and verifying twice (cache hit) agrees.
enum FuzzHarness {
    static let now: Int64 = 1_800_000_000

    struct Fixture: Sendable {
        let verifier: JWTVerifier
        let issuer: IssuerConfig
        /// `header.payload` of every token the harness signed.
        let signedInputs: Set<[UInt8]>
        /// Seed inputs for a corpus.
        let seeds: [[UInt8]]
    }

    /// Fixed keys and deterministic tokens, so corpus files stay valid across runs.
    static let fixture: Fixture = {
        do {
            func key(_ alg: String, _ raw: [UInt8]) throws -> SigningKey {
                try SigningKey(exported: Array(JSONWriter.serialize(["alg": .string(alg), "key": .string(Base64URL.encode(raw))]).utf8))
            }
            let signers = [
                JWTSigner(key: try key("HS256", Array(repeating: 0x42, count: 32)), keyID: "hs"),
                JWTSigner(key: try key("EdDSA", Array(repeating: 7, count: 32)), keyID: "ed"),
                JWTSigner(key: try key("ES256", Array(repeating: 0, count: 31) + [9]), keyID: "ec"),
            ]
            let issuer = IssuerConfig(
                name: "fuzz", issuer: "https://issuer.example", audiences: ["api://orders"], algorithms: [.HS256, .EdDSA, .ES256],
                keySource: .none, hmacKeys: [.init(keyID: "hs", secret: Array(repeating: 0x42, count: 32), algorithm: .HS256)])
            let jwks = JSONWriter.serialize(["keys": .array(signers.dropFirst().map { $0.key.publicJWK(keyID: $0.keyID) })])
            let store = KeySetStore()
            store.replace(issuerName: "fuzz", keySet: try JWKSet.parse(Array(jwks.utf8), issuer: issuer, logger: nil), version: nil)
            let verifier = JWTVerifier(issuers: [issuer], keys: store, cache: VerifiedTokenCache(capacity: 64, shards: 2), now: { now })
            let claims: JSONValue = [
                "iss": "https://issuer.example", "aud": ["api://orders"], "sub": "user-1", "exp": .integer(now + 600),
                "iat": .integer(now), "scope": "a b", "nested": ["x": [1, 2.5, true, nil, "\u{e9}"]],
            ]
            var inputs = Set<[UInt8]>()
            var seeds: [[UInt8]] = [Array(jwks.utf8), Array(#"{"a":[1,{"b":"\u00e9"}],"c":-1.5e3}"#.utf8), Array("eyJhbGciOiJIUzI1NiJ9".utf8)]
            for signer in signers {
                let token = try signer.sign(claims: claims)
                inputs.insert(Array(token.utf8[..<token.utf8.lastIndex(of: UInt8(ascii: "."))!]))
                seeds.append(Array(token.utf8))
            }
            return Fixture(verifier: verifier, issuer: issuer, signedInputs: inputs, seeds: seeds)
        } catch {
            fatalError("fuzz fixture: \(error)")
        }
    }()

    static func run(_ input: UnsafeRawBufferPointer) {
        let fixture = Self.fixture
        let bytes = [UInt8](input)

        if let value = try? JOSEJSONReader.parse(input) {
            let text = JSONWriter.serialize(value)
            guard let again = try? JOSEJSONReader.parse(Array(text.utf8)), again.numericEquals(value) else {
                fatalError("JSON round trip changed the value: \(text)")
            }
        }

        if let decoded = Base64URL.decode(input) {
            guard Array(Base64URL.encode(decoded).utf8) == bytes else {
                fatalError("base64url: two encodings decode to the same bytes")
            }
        }

        _ = try? JWKSet.parse(bytes, issuer: fixture.issuer, logger: nil)
        _ = try? UnverifiedJWT(parsing: String(decoding: bytes, as: UTF8.self)[...])

        let first = fixture.verifier.verify(input)
        let second = fixture.verifier.verify(input)
        switch (first, second) {
        case (.success(let token), .success(let again)):
            guard let dot = bytes.lastIndex(of: UInt8(ascii: ".")), fixture.signedInputs.contains(Array(bytes[..<dot])) else {
                fatalError("a token the harness never signed verified")
            }
            guard token.claims == again.claims, token.keyID == again.keyID else { fatalError("cache hit disagrees") }
        case (.failure(let a), .failure(let b)):
            guard a.reason == b.reason else { fatalError("same input, different rejections: \(a) / \(b)") }
        default:
            fatalError("same input verified once and not the other time")
        }
    }
}
