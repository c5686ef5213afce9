import PortcullisConfig
@testable import PortcullisJOSE
import Testing

@Suite("issuer configuration and JWK set parsing")
struct ConfigTests {
    static let yaml = """
    issuers:
      - name: main
        issuer: https://issuer.example
        audiences: [api://orders]
        algorithms: [RS256, ES256, EdDSA]
        jwks_file: keys/jwks.json
      - name: remote
        issuer: https://login.example
        audiences: [api://orders, api://billing]
        algorithms: [ES256, HS256]
        discovery_url: https://login.example/.well-known/openid-configuration
        leeway_seconds: 5
        iat_leeway_seconds: 0
        max_token_bytes: 4KiB
        jwks_refresh: {interval: 10m, min_interval: 1m, max_interval: 1h, max_stale: 2h, unknown_kid_throttle: 10s, negative_cache: 1m}
        hmac_secrets: [{kid: h1, secret_base64url: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8, alg: HS256}]
    """

    func issuers(_ yaml: String) throws -> [IssuerConfig] {
        var root = try ConfigNode.parse(yaml: yaml, file: "gw.yaml").mapping()
        return try IssuerConfig.list(from: try root.required("issuers"), baseDirectory: "/etc/portcullis")
    }

    @Test("a full configuration reads with defaults and resolved paths")
    func reads() throws {
        let list = try issuers(Self.yaml)
        #expect(list.count == 2)
        #expect(list[0].keySource == .jwksFile("/etc/portcullis/keys/jwks.json"))
        #expect(list[0].leewaySeconds == 30 && list[0].maxTokenBytes == 8192)
        #expect(list[0].iatLeewaySeconds == 2 && list[1].iatLeewaySeconds == 0)
        #expect(list[0].refresh == JWKSRefreshPolicy())
        #expect(list[0].algorithms == [.RS256, .ES256, .EdDSA])
        #expect(list[1].keySource == .discovery("https://login.example/.well-known/openid-configuration"))
        #expect(list[1].leewaySeconds == 5 && list[1].maxTokenBytes == 4096)
        #expect(list[1].refresh.interval == .seconds(600) && list[1].refresh.minInterval == .seconds(60))
        #expect(list[1].refresh.maxStale == .seconds(7200) && list[1].refresh.unknownKeyIDThrottle == .seconds(10))
        #expect(list[1].hmacKeys == [.init(keyID: "h1", secret: Array(0..<32), algorithm: .HS256)])
    }

    @Test("mistakes name the file, line and key", arguments: [
        ("  audience: [x]\n", "issuers[0].audience", "unknown key"),
        ("  jwks_uri: https://x.example/jwks\n", "issuers[0]", "exactly one of"),
        ("  leeway_seconds: lots\n", "issuers[0].leeway_seconds", "integer"),
        ("  leeway_seconds: 301\n", "issuers[0].leeway_seconds", "300"),
        ("  iat_leeway_seconds: 61\n", "issuers[0].iat_leeway_seconds", "60"),
        ("  jwks_refresh: {intervall: 5m}\n", "issuers[0].jwks_refresh.intervall", "unknown key"),
        ("  hmac_secrets: [{kid: a, secret_base64url: AAAA, alg: HS256}]\n", "issuers[0].hmac_secrets[0].secret_base64url", "32 bytes"),
        ("  hmac_secrets: [{kid: a, secret_base64url: AAAA, alg: RS256}]\n", "issuers[0].hmac_secrets[0].alg", "HS256"),
    ])
    func errors(_ extra: String, _ keyPath: String, _ message: String) throws {
        let yaml = """
        issuers:
          - name: main
            issuer: https://issuer.example
            audiences: [api://orders]
            algorithms: [RS256]
            jwks_file: jwks.json

        """ + extra.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n") + "\n"
        let error = #expect(throws: ConfigError.self) { try issuers(yaml) }
        #expect(error?.file == "gw.yaml")
        #expect(error?.line != nil)
        #expect(error?.keyPath.hasPrefix(keyPath) == true, "\(String(describing: error))")
        #expect(error?.message.contains(message) == true, "\(String(describing: error))")
    }

    /// The build before took such a name: the gateway's signed node record, which lists key
    /// sets as `name=version` pairs joined by commas, did not read back as signed, and every
    /// reader refused it — the gateway missing from `?wait` and rotations (an attacker review).
    @Test("an issuer name with a comma or an equals sign is refused, naming the file, line and key", arguments: ["hmac,eu", "a=b"])
    func nameSeparators(_ name: String) throws {
        let yaml = "issuers:\n  - name: '\(name)'\n    issuer: https://issuer.example\n    audiences: [a]\n    algorithms: [RS256]\n    jwks_file: j.json\n"
        let error = #expect(throws: ConfigError.self) { try issuers(yaml) }
        #expect(error?.file == "gw.yaml" && error?.line == 2 && error?.keyPath == "issuers[0].name", "\(String(describing: error))")
    }

    @Test("algorithm none, bad URLs, empty audiences and duplicates are refused", arguments: [
        "algorithms: [none]", "algorithms: [RS256, nOnE]", "algorithms: []", "audiences: []",
        "jwks_uri: http://keys.example/jwks", "jwks_uri: http://127.evil.example/jwks", "jwks_uri: http://localhost.evil.example/x",
        "max_token_bytes: 10GiB",
    ])
    func refused(_ line: String) throws {
        let key = String(line.prefix { $0 != ":" })
        var fields = ["name: main", "issuer: https://issuer.example", "audiences: [api://orders]", "algorithms: [RS256]"]
        fields.removeAll { $0.hasPrefix(key + ":") }
        fields.append(line)
        let yaml = "issuers:\n  - " + fields.joined(separator: "\n    ") + "\n"
        #expect(throws: ConfigError.self) { try issuers(yaml) }
    }

    @Test("loopback http URLs are accepted; duplicate names and issuers are not")
    func urlsAndDuplicates() throws {
        for url in ["http://127.0.0.1:8080/jwks", "http://localhost:9/x", "http://[::1]:80/"] {
            let yaml = "issuers:\n  - {name: a, issuer: i, audiences: [x], algorithms: [RS256], jwks_uri: '\(url)'}\n"
            #expect(try issuers(yaml).first?.keySource == .jwksURI(url))
        }
        let twice = "issuers:\n  - {name: a, issuer: i, audiences: [x], algorithms: [RS256]}\n  - {name: a, issuer: j, audiences: [x], algorithms: [RS256]}\n"
        #expect(throws: ConfigError.self) { try issuers(twice) }
        let sameIssuer = "issuers:\n  - {name: a, issuer: i, audiences: [x], algorithms: [RS256]}\n  - {name: b, issuer: i, audiences: [x], algorithms: [RS256]}\n"
        #expect(throws: ConfigError.self) { try issuers(sameIssuer) }
    }

    @Test("refresh delays follow max-age within bounds")
    func refreshDelay() throws {
        let policy = try JWKSRefreshPolicy(node: try .parse(yaml: "{interval: 5m, min_interval: 30s, max_interval: 1h}"))
        #expect(policy.refreshDelay(maxAge: nil) == .seconds(300))
        #expect(policy.refreshDelay(maxAge: .seconds(5)) == .seconds(30))
        #expect(policy.refreshDelay(maxAge: .seconds(600)) == .seconds(600))
        #expect(policy.refreshDelay(maxAge: .seconds(86_400)) == .seconds(3600))
        #expect(JWKSDownloader.maxAge(["public, max-age=120"]) == .seconds(120))
        #expect(JWKSDownloader.maxAge(["no-cache"]) == .zero)
        #expect(JWKSDownloader.maxAge(["private"]) == nil)
        #expect(throws: ConfigError.self) { try JWKSRefreshPolicy(node: try .parse(yaml: "{min_interval: 2h, max_interval: 1h}")) }
    }

    @Test("JWK sets: each key gets one algorithm; bad keys are skipped with reasons, the rest kept")
    func jwkSets() throws {
        let rsa = try SigningKey.generate(.RS256).publicJWK(keyID: "r")
        var rsaNoAlg = rsa.objectValue!
        rsaNoAlg["alg"] = nil
        rsaNoAlg["kid"] = "r-noalg"
        let ec = try SigningKey.generate(.ES256).publicJWK(keyID: "e")
        var ecPrivate = ec.objectValue!
        ecPrivate["kid"] = "e-private"
        ecPrivate["d"] = "AAAA"
        let document: JSONValue = ["keys": [
            rsa, .object(rsaNoAlg), ec, .object(ecPrivate),
            ["kty": "oct", "kid": "o", "k": "AAAA"],
            ["kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"],
            ["kty": "RSA", "kid": "sig-enc", "use": "enc", "n": "AA", "e": "AQAB"],
            ["kty": "RSA", "kid": "ops", "key_ops": ["encrypt"], "n": "AA", "e": "AQAB"],
            ["kty": "OKP", "kid": "x", "crv": "X25519", "x": "AA"],
            ["kty": "EC", "kid": "off", "crv": "P-256", "x": ec["x"]!, "y": ec["x"]!],
            "not an object",
            ["kid": "no-kty"],
        ]]
        let issuer = Fixture.issuerConfig(algorithms: [.PS256, .RS256, .ES256])
        let set = try JWKSet.parse(Array(JSONWriter.serialize(document).utf8), issuer: issuer, logger: nil)
        #expect(set.count == 3)
        #expect(set.keysByID["r"]?.first?.algorithm == .RS256)
        // No alg on an RSA key: the first RSA algorithm of the issuer's list (PS256 here).
        #expect(set.keysByID["r-noalg"]?.first?.algorithm == .PS256)
        #expect(set.keysByID["e"]?.first?.algorithm == .ES256)
        #expect(set.skipped.count == 9)
        let reason = { (kid: String) in set.skipped.first { $0.keyID == kid }?.reason ?? "" }
        #expect(reason("e-private").contains("private"))
        #expect(reason("o").contains("hmac_secrets"))
        #expect(reason("p521").contains("P-521"))
        #expect(reason("sig-enc").contains("use"))
        #expect(reason("ops").contains("key_ops"))
        #expect(reason("off").contains("not on P-256"))

        // A key whose alg is outside the allowlist is skipped.
        let rsOnly = Fixture.issuerConfig(algorithms: [.ES256])
        let narrowed = try JWKSet.parse(Array(JSONWriter.serialize(["keys": [rsa, ec]]).utf8), issuer: rsOnly, logger: nil)
        #expect(narrowed.count == 1)

        for bad in ["[]", "{}", #"{"keys": {}}"#, "not json", #"{"keys":[],"keys":[]}"#] {
            #expect(throws: JWKError.self) { try JWKSet.parse(Array(bad.utf8), issuer: issuer, logger: nil) }
        }
    }
}
