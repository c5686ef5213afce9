import Foundation
import PortcullisJOSE
import Synchronization
import PortcullisTestSupport
import Testing

/// A real `portcullis control` process with its config in a temporary folder.
final class ControlProcess: Sendable {
    let port: Int
    let adminPort: Int
    let directory: String
    let process: ManagedProcess

    /// Writes the config returned by `config(port, adminPort, directory)` and starts the control
    /// plane; returns once its admin `/healthz` answers (and, with `waitForSigningKey`, once the
    /// authorization server publishes a key).
    static func start(directory: String? = nil, nodeID: String = "control-1", waitForSigningKey: Bool,
                      config: (_ port: Int, _ adminPort: Int, _ directory: String) -> String) async throws -> ControlProcess {
        let directory = try directory ?? TemporaryDirectory.make(prefix: "portcullis-ctl")
        let port = try FreePort.allocate()
        let adminPort = try FreePort.allocate()
        let file = directory + "/\(nodeID).yaml"
        try config(port, adminPort, directory).write(toFile: file, atomically: true, encoding: .utf8)
        let process = try ManagedProcess(executable: PortcullisBinary.path,
                                         arguments: ["control", "--config", file, "--log-level", "info"],
                                         logFile: directory + "/\(nodeID).log")
        let control = ControlProcess(port: port, adminPort: adminPort, directory: directory, process: process)
        do {
            try await Readiness.waitForHTTP(port: adminPort, path: "/healthz", timeout: .seconds(20))
            try await Readiness.waitForHTTP(port: port, path: "/healthz", timeout: .seconds(20))
            if waitForSigningKey {
                let deadline = ContinuousClock.now + .seconds(20)
                while try control.get(port: port, "/oauth2/jwks").json["keys"].map({ ($0 as? [Any])?.isEmpty == false }) != true {
                    guard ContinuousClock.now < deadline else { throw FixtureError("no signing key published") }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
        } catch {
            throw FixtureError("control plane did not start: \(error)\n--- output ---\n\(process.output)")
        }
        return control
    }

    private init(port: Int, adminPort: Int, directory: String, process: ManagedProcess) {
        self.port = port
        self.adminPort = adminPort
        self.directory = directory
        self.process = process
    }

    var issuer: String { "http://127.0.0.1:\(port)" }
    var adminURL: String { "http://127.0.0.1:\(adminPort)" }

    func get(port: Int, _ path: String, headers: [(String, String)] = []) throws -> HTTPTestResponse {
        let client = try HTTPTestClient(port: port)
        defer { client.close() }
        return try client.request("GET", path, headers: headers + [("Connection", "close")])
    }

    /// An admin API call with the test credential (or `token`, or none with `token: ""`).
    func admin(_ method: String, _ path: String, json: String? = nil, token: String? = ControlCluster.adminToken,
               headers: [(String, String)] = []) throws -> HTTPTestResponse {
        let client = try HTTPTestClient(port: adminPort, timeout: 60)
        defer { client.close() }
        var all = headers + [("Connection", "close")]
        if let token, !token.isEmpty { all.append(("Authorization", "Bearer \(token)")) }
        if json != nil { all.append(("Content-Type", "application/json")) }
        return try client.request(method, path, headers: all, body: json.map { Array($0.utf8) } ?? (method == "POST" ? [] : nil))
    }

    /// A form POST to the authorization server.
    func oauth(_ path: String, form: [String: String], basic: (String, String)? = nil) throws -> HTTPTestResponse {
        let client = try HTTPTestClient(port: port)
        defer { client.close() }
        var headers = [("Content-Type", "application/x-www-form-urlencoded"), ("Connection", "close")]
        if let (id, secret) = basic {
            headers.append(("Authorization", "Basic " + Data("\(id):\(secret)".utf8).base64EncodedString()))
        }
        let body = form.sorted { $0.key < $1.key }.map { "\(formEscape($0.key))=\(formEscape($0.value))" }.joined(separator: "&")
        return try client.request("POST", path, headers: headers, body: Array(body.utf8))
    }

    func metrics() throws -> String {
        try get(port: adminPort, "/metrics").text
    }

    func stop() async {
        _ = await process.terminate(timeout: .seconds(10))
    }
}

func formEscape(_ text: String) -> String {
    text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? text
}

/// A small cluster: a real redis-server, a test upstream, a control plane with the built-in
/// authorization server, and gateway processes that trust it through the cluster.
final class ControlCluster: Sendable {
    static let adminToken = "test-admin-token-b2f1c9"
    static let clientSecret = "demo-secret-7d41"
    static let otherSecret = "other-secret-3a9e"
    static let secret = [UInt8](repeating: 9, count: 32)
    static let audience = "api://demo"

    let redis: RedisServerFixture
    let upstream: TestUpstream
    let control: ControlProcess
    private let started = Mutex<[GatewayProcess]>([])
    var gateways: [GatewayProcess] { started.withLock { $0 } }
    let gatewayExtra: String
    let gatewayIssuers: String
    let gatewayHeartbeat: String
    /// The Redis URL the gateways' configs name (the server's own URL unless given).
    let gatewayRedisURL: String

    /// - Parameters:
    ///   - controlExtra: YAML appended to the control plane's config (top level).
    ///   - asExtra: YAML appended inside `authorization_server:` (indented by 2).
    ///   - gatewayIssuers: extra entries of the gateways' `issuers:` list.
    ///   - redisArguments: extra `redis-server` arguments (e.g. `--aclfile`).
    ///   - controlRedisURL, gatewayRedisURL: the `cluster.redis` URL of the control plane and of the
    ///     gateways, given the server's port (default: the server's own URL).
    init(authorizationServer: Bool = true, controlExtra: String = "", asExtra: String = "", asClients: [String] = [], accessTokenTTL: String = "5m",
         gatewayIssuers: String = "", gatewayExtra: String = "", gatewayHeartbeat: String = "300ms",
         redisPersistence: Bool = false, redisArguments: [String] = [],
         controlRedisURL: ((_ port: Int) -> String)? = nil, gatewayRedisURL: ((_ port: Int) -> String)? = nil) async throws {
        redis = try await RedisServerFixture.start(persistence: redisPersistence, extraArguments: redisArguments)
        upstream = try await TestUpstream.start()
        self.gatewayExtra = gatewayExtra
        self.gatewayRedisURL = gatewayRedisURL?(redis.port) ?? redis.url
        let redisURL = controlRedisURL?(redis.port) ?? redis.url
        control = try await ControlProcess.start(waitForSigningKey: authorizationServer) { port, adminPort, _ in
            Self.controlConfig(port: port, adminPort: adminPort, redisURL: redisURL, nodeID: "control-1",
                               authorizationServer: authorizationServer, controlExtra: controlExtra, asExtra: asExtra,
                               asClients: asClients, accessTokenTTL: accessTokenTTL)
        }
        self.gatewayIssuers = gatewayIssuers
        self.gatewayHeartbeat = gatewayHeartbeat
    }

    static func controlConfig(port: Int, adminPort: Int, redisURL: String, nodeID: String, authorizationServer: Bool,
                              controlExtra: String, asExtra: String, asClients: [String] = [], accessTokenTTL: String = "5m") -> String {
        var text = """
        node_id: \(nodeID)
        listen: 127.0.0.1:\(port)
        admin_listen: 127.0.0.1:\(adminPort)
        cluster:
          redis: \(redisURL)
          secret: \(Base64URL.encode(secret))
          heartbeat_interval: 300ms
        admin_tokens:
          - {name: test-ops, sha256: \(sha256Hex(adminToken))}
          - {name: second, sha256: \(sha256Hex("another-admin-token"))}
        max_wait: 20s

        """
        if authorizationServer {
            text += """
            authorization_server:
              issuer: http://127.0.0.1:\(port)
              audience: \(audience)
              access_token_ttl: \(accessTokenTTL)
              refresh_token_ttl: 1h
              key_encryption_key_file: kek.secret
              rotation_propagation_timeout: 5s
              clients:
                - {client_id: demo-client, secret_sha256: \(sha256Hex(clientSecret)), scopes: [orders:read, orders:write], grant_types: [client_credentials, refresh_token]}
                - {client_id: other-client, secret_sha256: \(sha256Hex(otherSecret)), scopes: [orders:read]}
            \(asClients.map { "    - " + $0 + "\n" }.joined())\(asExtra)

            """
        }
        return text + controlExtra + "\n"
    }

    var issuer: String { control.issuer }

    /// A second control plane of this cluster (`nodeID`): the first one's folder (its
    /// `kek.secret`), the same Redis, and the same issuer — an identity, not a location.
    func startPeerControl(nodeID: String = "control-2", asExtra: String = "", asClients: [String] = [],
                          waitForSigningKey: Bool = true) async throws -> ControlProcess {
        let redisURL = redis.url, issuer = issuer
        return try await ControlProcess.start(directory: control.directory, nodeID: nodeID, waitForSigningKey: waitForSigningKey) { port, adminPort, _ in
            Self.controlConfig(port: port, adminPort: adminPort, redisURL: redisURL, nodeID: nodeID, authorizationServer: true,
                               controlExtra: "", asExtra: asExtra, asClients: asClients)
                .replacingOccurrences(of: "issuer: http://127.0.0.1:\(port)", with: "issuer: \(issuer)")
        }
    }

    func gatewayConfig(port: Int, adminPort: Int, nodeID: String) -> String {
        """
        node_id: \(nodeID)
        listen: 127.0.0.1:\(port)
        admin_listen: 127.0.0.1:\(adminPort)
        event_loops: 1
        access_log: false
        issuers:
          - name: builtin
            issuer: \(issuer)
            audiences: [\(Self.audience)]
            algorithms: [ES256]
        \(gatewayIssuers)
        cluster:
          redis: \(gatewayRedisURL)
          secret: \(Base64URL.encode(Self.secret))
          heartbeat_interval: \(gatewayHeartbeat)
          rate_limit_sync_interval: 50ms
          revocation:
            check_interval: 200ms
        rate_limits:
          - {name: per-client, key: client_id, limit: 100000, window: 1h}
        \(gatewayExtra)
        routes:
          - name: api
            path_prefix: /
            upstream: {targets: [\(upstream.address)]}
            auth: {type: jwt}
            rate_limit: per-client
        """
    }

    @discardableResult
    func startGateway(id: String) async throws -> GatewayProcess {
        let gateway = try await GatewayProcess.start { port, admin, _ in
            self.gatewayConfig(port: port, adminPort: admin, nodeID: id)
        }
        started.withLock { $0.append(gateway) }
        return gateway
    }

    /// A `client_credentials` access token (and refresh token) for `demo-client`.
    func clientCredentials(client: String = "demo-client", secret: String = ControlCluster.clientSecret,
                           scope: String? = nil) throws -> (access: String, refresh: String?) {
        var form = ["grant_type": "client_credentials"]
        if let scope { form["scope"] = scope }
        let response = try control.oauth("/oauth2/token", form: form, basic: (client, secret))
        guard response.status == 200, let access = response.json["access_token"] as? String else {
            throw FixtureError("token endpoint answered \(response.status): \(response.text)")
        }
        return (access, response.json["refresh_token"] as? String)
    }

    /// What every gateway answers for `token` on the API route.
    func statuses(_ token: String) throws -> [Int] {
        try gateways.map { try $0.request("GET", "/orders", headers: [("Authorization", "Bearer \(token)")]).status }
    }

    func shutdown() async {
        for gateway in gateways { await gateway.stop() }
        await control.stop()
        await upstream.stop()
        await redis.shutdown()
    }
}

/// Lower-case hex SHA-256 (via sha256sum, so tests do not share the code under test).
func sha256Hex(_ text: String) -> String {
    let result = try? runCommand("/usr/bin/sha256sum", [], stdin: text)
    return String((result?.stdout ?? "").prefix(64))
}

/// Polls `condition` until it holds; records an issue naming `what` if it never does.
@discardableResult
func eventually(timeout: Duration = .seconds(5), _ what: String, _ condition: () async throws -> Bool) async throws -> Bool {
    let held = try await Poll.until(timeout: timeout, condition)
    if !held { Issue.record("not within \(timeout): \(what)") }
    return held
}

/// Decodes a JWT's payload without verifying it (tests read their own tokens' claims).
func claims(of jwt: String) -> [String: Any] {
    let parts = jwt.split(separator: ".")
    guard parts.count == 3, let bytes = Base64URL.decode(parts[1]),
          let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else { return [:] }
    return object
}

func header(of jwt: String) -> [String: Any] {
    let parts = jwt.split(separator: ".")
    guard parts.count == 3, let bytes = Base64URL.decode(parts[0]),
          let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else { return [:] }
    return object
}

/// Runs a Python test script from `Scripts/`; nil when the script says its library is missing (77).
func runPythonScript(_ name: String, _ arguments: [String]) throws -> CommandResult? {
    let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/\(name)").path
    let result = try runCommand("/usr/bin/env", ["python3", script] + arguments)
    return result.status == 77 ? nil : result
}

/// Every suite that starts processes is nested here, so they run one at a time: they are
/// timing-sensitive (propagation windows, rotation under load) and share two cores.
@Suite("control plane", .serialized)
struct ControlPlaneTests {}
