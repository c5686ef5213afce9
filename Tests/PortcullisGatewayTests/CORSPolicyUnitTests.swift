@testable import PortcullisGateway
import NIOHTTP1
import PortcullisConfig
import Testing

/// The CORS rules on their own: what a `cors:` block may say, and the fields a preflight and an
/// actual response get.
@Suite("CORS policy")
struct CORSPolicyUnitTests {
    func config(_ cors: String) throws -> CORSConfig {
        let yaml = """
            listen: 127.0.0.1:1
            routes:
              - name: r
                path_prefix: /
                upstream: {targets: ['127.0.0.1:1']}
                cors: \(cors)
            """
        return try #require(try GatewayConfig.parse(yaml: yaml, file: "gw.yaml").routes[0].cors)
    }

    func policy(_ cors: String) throws -> CORSPolicy { CORSPolicy(try config(cors)) }

    func preflight(origin: String, method: String, headers: String? = nil) -> CORSPolicy.Preflight? {
        var fields = HTTPHeaders([("Origin", origin), ("Access-Control-Request-Method", method)])
        if let headers { fields.add(name: "Access-Control-Request-Headers", value: headers) }
        return CORSPolicy.Preflight(fields)
    }

    @Test("'*' with allow_credentials is refused at load, naming the file, line and key")
    func wildcardWithCredentials() throws {
        let error = #expect(throws: ConfigError.self) {
            try config("{allowed_origins: '*', allow_credentials: true}")
        }
        #expect(error?.file == "gw.yaml")
        #expect(error?.line == 6)
        #expect(error?.keyPath == "routes[0].cors.allowed_origins")
        #expect(error?.message.contains("allow_credentials") == true)
        let headers = #expect(throws: ConfigError.self) {
            try config("{allowed_origins: [https://a.example], allowed_headers: ['*'], allow_credentials: true}")
        }
        #expect(headers?.keyPath == "routes[0].cors.allowed_headers")
    }

    @Test("an allowed origin is scheme://host[:port]: 'null', paths, wildcards, users and '*' among others are refused", arguments: [
        "[null]", "[https://a.example/]", "[https://a.example/x]", "['https://*.a.example']", "[https://u@a.example]",
        "[a.example]", "['*', https://a.example]", "[]",
    ])
    func invalidOrigins(_ origins: String) {
        #expect(throws: ConfigError.self) { try config("{allowed_origins: \(origins)}") }
    }

    @Test("unknown keys and bad max_age are refused")
    func otherKeys() {
        #expect(throws: ConfigError.self) { try config("{allowed_origins: [https://a.example], allow_origin: x}") }
        #expect(throws: ConfigError.self) { try config("{allowed_origins: [https://a.example], max_age: 48h}") }
    }

    @Test("a preflight from an allowed origin gets the origin, credentials, methods, the requested headers and max-age")
    func allowedPreflight() throws {
        let cors = try policy("{allowed_origins: [https://App.example:8443], allowed_methods: [get, put], allowed_headers: [X-Trace, authorization], allow_credentials: true, max_age: 90s}")
        let question = try #require(preflight(origin: "https://app.example:8443", method: "PUT", headers: "X-Trace ,Authorization"))
        let fields = try cors.answer(question).get()
        #expect(fields.map { "\($0.name): \($0.value)" } == [
            "Access-Control-Allow-Origin: https://app.example:8443",
            "Access-Control-Allow-Credentials: true",
            "Access-Control-Allow-Methods: GET, PUT",
            "Access-Control-Allow-Headers: x-trace, authorization",
            "Access-Control-Max-Age: 90",
            "Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ])
    }

    @Test("a preflight is refused for an origin, a method or a header not listed; '*' headers never cover Authorization")
    func refusedPreflight() throws {
        let cors = try policy("{allowed_origins: [https://app.example], allowed_headers: [content-type]}")
        #expect(cors.answer(try #require(preflight(origin: "https://evil.example", method: "GET"))).failure == .origin)
        #expect(cors.answer(try #require(preflight(origin: "https://app.example.evil.example", method: "GET"))).failure == .origin)
        #expect(cors.answer(try #require(preflight(origin: "https://app.example", method: "DELETE"))).failure == .method)
        #expect(cors.answer(try #require(preflight(origin: "https://app.example", method: "POST", headers: "content-type, x-a"))).failure == .header("x-a"))
        let any = try policy("{allowed_origins: '*', allowed_headers: ['*']}")
        #expect(any.answer(try #require(preflight(origin: "https://x.example", method: "GET", headers: "x-anything"))).failure == nil)
        #expect(any.answer(try #require(preflight(origin: "https://x.example", method: "GET", headers: "authorization"))).failure == .header("authorization"))
    }

    @Test("only an OPTIONS-shaped question with one Origin and one Access-Control-Request-Method is a preflight")
    func preflightShape() {
        #expect(CORSPolicy.Preflight(HTTPHeaders([("Origin", "https://a.example")])) == nil)
        #expect(CORSPolicy.Preflight(HTTPHeaders([("Access-Control-Request-Method", "GET")])) == nil)
        #expect(CORSPolicy.Preflight(HTTPHeaders([("Origin", "https://a.example"), ("Origin", "https://b.example"), ("Access-Control-Request-Method", "GET")])) == nil)
    }

    @Test("actual responses always vary on Origin and name only a configured origin, never the request's other spellings", arguments: [
        ("https://app.example", "https://app.example"),
        ("HTTPS://APP.EXAMPLE", "https://app.example"),
        ("https://app.example.", nil),
        ("https://app.example:443", nil),
        ("https://evil.example", nil),
        ("https://app.example\t", nil),
        ("null", nil),
    ] as [(String, String?)])
    func actualResponse(_ origin: String, _ expected: String?) throws {
        let cors = try policy("{allowed_origins: [https://app.example], exposed_headers: [X-B, x-a]}")
        let fields = cors.responseFields(HTTPHeaders([("Origin", origin)]))
        #expect(fields.first(name: "Vary") == "Origin")
        #expect(fields.first(name: "Access-Control-Allow-Origin") == expected)
        #expect(fields.first(name: "Access-Control-Expose-Headers") == (expected == nil ? nil : "x-a, x-b"))
        #expect(fields.first(name: "Access-Control-Allow-Credentials") == nil)
        #expect(cors.responseFields(HTTPHeaders()).map(\.name) == ["Vary"])
    }
}

extension Result {
    /// The error, nil on success.
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
