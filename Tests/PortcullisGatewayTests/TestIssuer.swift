import Foundation
import PortcullisJOSE

/// An issuer for gateway tests: real keys, a JWKS file, and tokens signed with swift-crypto.
struct TestIssuer {
    static let issuer = "https://issuer.test"
    static let audience = "api://test"

    let es256: JWTSigner
    let rs256: JWTSigner

    init() throws {
        es256 = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "es-1")
        rs256 = JWTSigner(key: try SigningKey.generate(.RS256), keyID: "rs-1")
    }

    var jwks: String {
        JSONWriter.serialize(["keys": .array([es256.key.publicJWK(keyID: "es-1"), rs256.key.publicJWK(keyID: "rs-1")])])
    }

    /// `issuers:` YAML for a gateway config, with the JWKS written next to it as `jwks.json`.
    func issuersYAML(directory: String) throws -> String {
        try jwks.write(toFile: directory + "/jwks.json", atomically: true, encoding: .utf8)
        return """
        issuers:
          - name: test
            issuer: \(Self.issuer)
            audiences: [\(Self.audience)]
            algorithms: [ES256, RS256]
            jwks_file: jwks.json
        """
    }

    func token(sub: String = "alice", scope: String? = "orders:read", clientID: String? = "web",
               expiresIn: Int64 = 300, extra: [String: JSONValue] = [:], signer: JWTSigner? = nil) throws -> String {
        let now = Int64(Date().timeIntervalSince1970)
        var claims: [String: JSONValue] = [
            "iss": .string(Self.issuer), "aud": .string(Self.audience), "sub": .string(sub),
            "iat": .integer(now), "exp": .integer(now + expiresIn), "jti": .string(UUID().uuidString),
        ]
        if let scope { claims["scope"] = .string(scope) }
        if let clientID { claims["client_id"] = .string(clientID) }
        for (key, value) in extra { claims[key] = value }
        return try (signer ?? es256).sign(claims: .object(claims))
    }
}
