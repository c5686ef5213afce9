@testable import PortcullisJOSE
import Testing

/// The keys the built-in authorization server signs with (`SigningKey.generate`; its config takes
/// asymmetric algorithms only, `ControlUnitTests`), RFC 8725 §3.5.
@Suite("generated signing keys")
struct SigningKeyTests {
    @Test("every generated key is fresh, RSA keys have a 2048-bit modulus and exponent 65537, and a public JWK read back verifies the key's own signature only", arguments: [JWSAlgorithm.RS256, .PS256, .ES256, .ES384, .EdDSA])
    func generatedKeys(_ algorithm: JWSAlgorithm) throws {
        let first = try SigningKey.generate(algorithm), second = try SigningKey.generate(algorithm)
        #expect(first.exportPrivate() != second.exportPrivate())
        let jwk = first.publicJWK(keyID: "a"), other = second.publicJWK(keyID: "a")
        #expect(jwk != other)
        if case .object(let members) = jwk, algorithm == .RS256 || algorithm == .PS256 {
            let modulus = try #require(members["n"]?.stringValue.flatMap { Base64URL.decode($0) })
            #expect(modulus.count == 256 && modulus[0] & 0x80 != 0, "an RSA modulus of \(modulus.count) bytes")
            #expect(members["e"]?.stringValue == "AQAB")
        }
        let issuer = Fixture.issuerConfig(algorithms: [algorithm])
        let store = KeySetStore()
        store.replace(issuerName: "main", keySet: try JWKSet.parse(Array(JSONWriter.serialize(["keys": .array([jwk])]).utf8), issuer: issuer, logger: nil),
                      version: "v1")
        let verifier = JWTVerifier(issuers: [issuer], keys: store, cache: nil, now: { Fixture.now })
        #expect(verifier.verify(try JWTSigner(key: first, keyID: "a").sign(claims: Fixture.claims())).value != nil)
        #expect(verifier.verify(try JWTSigner(key: second, keyID: "a").sign(claims: Fixture.claims())).reason == .badSignature)
    }
}
