@testable import PortcullisJOSE
import Testing

/// The published examples: RFC 7515 A.2 (RS256), A.3 (ES256), RFC 8037 A.4 (Ed25519).
@Suite("RFC 7515 / RFC 8037 examples")
struct RFCVectorTests {
    static let payload = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    static let rs256Token = "eyJhbGciOiJSUzI1NiJ9." + payload + "."
        + "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"
    static let rsaN = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"
    static let es256Token = "eyJhbGciOiJFUzI1NiJ9." + payload + "."
        + "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
    static let ecX = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
    static let ecY = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
    static let ed25519Token = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
        + "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
    static let edX = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    static let exp: Int64 = 1_300_819_380

    /// The RFC keys have no kid; the issuer "joe" is the RFC's.
    func verifier(jwk: JSONValue, algorithm: JWSAlgorithm, now: Int64) throws -> JWTVerifier {
        let issuer = IssuerConfig(name: "rfc", issuer: "joe", audiences: ["unused"], algorithms: [algorithm], keySource: .none)
        let set = try JWKSet.parse(Array(JSONWriter.serialize(["keys": [jwk]]).utf8), issuer: issuer, logger: nil)
        #expect(set.count == 1)
        let store = KeySetStore()
        store.replace(issuerName: "rfc", keySet: set, version: nil)
        return JWTVerifier(issuers: [issuer], keys: store, cache: nil, now: { now })
    }

    /// The RFC claims have no `aud`, so full verification stops at the audience check: reaching
    /// `missing_claim` means the signature and `exp` passed (they are checked first).
    @Test("RFC 7515 A.2 RS256 and A.3 ES256 verify before exp and expire after it", arguments: [JWSAlgorithm.RS256, .ES256])
    func rfc7515(_ algorithm: JWSAlgorithm) throws {
        let jwk: JSONValue = algorithm == .RS256
            ? ["kty": "RSA", "n": .string(Self.rsaN), "e": "AQAB"]
            : ["kty": "EC", "crv": "P-256", "x": .string(Self.ecX), "y": .string(Self.ecY)]
        let token = algorithm == .RS256 ? Self.rs256Token : Self.es256Token
        let before = try verifier(jwk: jwk, algorithm: algorithm, now: Self.exp - 100)
        let result = before.verify(token)
        #expect(result.reason == .missingClaim)
        if case .failure(let rejection) = result { #expect(rejection.detail.contains("aud")) }

        // One flipped signature bit: now the signature check fails first.
        var tampered = Array(token.utf8)
        tampered[tampered.count - 2] = tampered[tampered.count - 2] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        #expect(before.verify(tampered).reason == .badSignature)

        let after = try verifier(jwk: jwk, algorithm: algorithm, now: Self.exp + 31)
        #expect(after.verify(token).reason == .expired)
    }

    @Test("RFC 8037 A.4 Ed25519 signature verifies; a modified one does not")
    func rfc8037() throws {
        let issuer = IssuerConfig(name: "rfc", issuer: "-", audiences: ["-"], algorithms: [.EdDSA], keySource: .none)
        let set = try JWKSet.parse(Array(#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"\#(Self.edX)"}]}"#.utf8), issuer: issuer, logger: nil)
        let key = try #require(set.allKeys.first)
        #expect(key.algorithm == .EdDSA)
        let parts = Self.ed25519Token.split(separator: ".")
        let input = Array("\(parts[0]).\(parts[1])".utf8)
        let signature = try #require(Base64URL.decode(parts[2]))
        #expect(input.withUnsafeBytes { key.isValidSignature(signature, signingInput: $0) })
        var changed = signature
        changed[0] ^= 1
        #expect(!input.withUnsafeBytes { key.isValidSignature(changed, signingInput: $0) })
        // The payload is not a claims set, so the full verifier refuses it as malformed.
        let store = KeySetStore()
        store.replace(issuerName: "rfc", keySet: set, version: nil)
        #expect(JWTVerifier(issuers: [issuer], keys: store, cache: nil).verify(Self.ed25519Token).reason == .malformed)
    }

    @Test("Ed25519: S >= L is refused even before the curve arithmetic")
    func ed25519Malleability() throws {
        let parts = Self.ed25519Token.split(separator: ".")
        var signature = try #require(Base64URL.decode(parts[2]))
        #expect(VerificationKey.isCanonicalEd25519Scalar(signature))
        // S + L: the classic malleated signature, same point equation, non-canonical scalar.
        let order: [UInt8] = [0xED, 0xD3, 0xF5, 0x5C, 0x1A, 0x63, 0x12, 0x58, 0xD6, 0x9C, 0xF7, 0xA2, 0xDE, 0xF9, 0xDE, 0x14,
                              0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]
        var carry = 0
        for i in 0..<32 {
            let sum = Int(signature[32 + i]) + Int(order[i]) + carry
            signature[32 + i] = UInt8(sum & 0xFF)
            carry = sum >> 8
        }
        #expect(!VerificationKey.isCanonicalEd25519Scalar(signature))
        var exactlyL = Array(repeating: UInt8(0), count: 32) + order
        #expect(!VerificationKey.isCanonicalEd25519Scalar(exactlyL))
        exactlyL[32] -= 1
        #expect(VerificationKey.isCanonicalEd25519Scalar(exactlyL))
    }
}
