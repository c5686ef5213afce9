import Foundation
@testable import PortcullisJOSE
import PortcullisConfig
import Synchronization

/// Shared helpers for the JOSE tests.
enum Fixture {
    static let issuer = "https://issuer.example"
    static let audience = "api://orders"
    static let now: Int64 = 1_800_000_000

    static var vectorsDirectory: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Vectors").path
    }

    static func issuerConfig(name: String = "main", issuer: String = Fixture.issuer, algorithms: [JWSAlgorithm] = JWSAlgorithm.allCases,
                             leeway: Int = 30, hmacKeys: [IssuerConfig.HMACKey] = [], keySource: IssuerConfig.KeySource = .none,
                             refresh: JWKSRefreshPolicy = JWKSRefreshPolicy()) -> IssuerConfig {
        IssuerConfig(name: name, issuer: issuer, audiences: [audience], algorithms: algorithms, keySource: keySource,
                     leewaySeconds: leeway, refresh: refresh, hmacKeys: hmacKeys)
    }

    static func claims(_ overrides: [String: JSONValue] = [:], now: Int64 = Fixture.now) -> JSONValue {
        var claims: [String: JSONValue] = [
            "iss": .string(issuer), "aud": .string(audience), "sub": "user-1", "jti": "jti-1",
            "exp": .integer(now + 600), "iat": .integer(now - 10), "scope": "orders:read orders:write",
        ]
        for (key, value) in overrides { claims[key] = value }
        return .object(claims.filter { !$0.value.isNull })
    }

    /// A JWK set document holding the public keys of `signers`.
    static func jwks(_ signers: [JWTSigner]) -> [UInt8] {
        let keys = signers.compactMap { signer -> JSONValue? in
            if case .hmac = signer.key { return nil }
            return signer.key.publicJWK(keyID: signer.keyID)
        }
        return Array(JSONWriter.serialize(["keys": .array(keys)]).utf8)
    }
}

/// A clock tests can move.
final class TestClock: Sendable {
    private let value: Atomic<Int64>
    init(_ start: Int64 = Fixture.now) { value = Atomic(start) }
    var now: Int64 { value.load(ordering: .relaxed) }
    func set(_ seconds: Int64) { value.store(seconds, ordering: .relaxed) }
    func advance(_ seconds: Int64) { value.add(seconds, ordering: .relaxed) }
}

extension Result where Failure == TokenRejection {
    var reason: RejectionReason? {
        if case .failure(let rejection) = self { return rejection.reason }
        return nil
    }
    var value: Success? {
        if case .success(let value) = self { return value }
        return nil
    }
}
