import Foundation
import PortcullisTestSupport
import Testing

/// The cluster of `cluster/run.sh` — the same scripts and configs a user runs — started on free
/// loopback ports in a temporary folder, with the binary under test.
final class LocalCluster {
    let directory: String
    let environment: [String: String]
    let gateways: Int
    private(set) var env: [String: String] = [:]
    /// Processes this test started itself after killing the script's originals (restarts).
    var restarted: [ManagedProcess] = []

    static let script = PortcullisBinary.packageRoot + "/cluster/run.sh"

    init(gateways: Int = 3) throws {
        self.gateways = gateways
        directory = try TemporaryDirectory.make(prefix: "portcullis-e2e")
        var environment: [String: String] = [
            "PORTCULLIS_BIN": PortcullisBinary.path,
            "CLUSTER_DIR": directory,
            "GATEWAYS": String(gateways),
        ]
        for name in ["REDIS_PORT", "CONTROL_PORT", "CONTROL_ADMIN_PORT", "UPSTREAM_PORT", "DEMO_APP_PORT"] {
            environment[name] = String(try FreePort.allocate())
        }
        // Gateways take consecutive ports from a base: find a free run of them.
        environment["GATEWAY_PORT"] = String(try FreePort.run(count: gateways))
        environment["GATEWAY_ADMIN_PORT"] = String(try FreePort.run(count: gateways))
        self.environment = environment
    }

    func start() throws {
        let result = try runCommand("/bin/bash", [Self.script, "start"], environment: environment)
        guard result.status == 0 else {
            throw FixtureError("cluster/run.sh start failed (\(result.status)):\n\(result.stdout)\n\(result.stderr)\n\(logs())")
        }
        let text = try String(contentsOfFile: directory + "/env", encoding: .utf8)
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { env[String(parts[0])] = String(parts[1]) }
        }
    }

    func stop() {
        _ = try? runCommand("/bin/bash", [Self.script, "stop"], environment: environment)
    }

    func logs() -> String {
        let folder = directory + "/logs"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.sorted().map { name in
            "--- \(name) ---\n" + ((try? String(contentsOfFile: folder + "/" + name, encoding: .utf8))?.suffix(3000) ?? "")
        }.joined(separator: "\n")
    }

    // MARK: Addresses

    func gatewayPort(_ node: Int) -> Int { Int(environment["GATEWAY_PORT"]!)! + node - 1 }
    func gatewayAdminPort(_ node: Int) -> Int { Int(environment["GATEWAY_ADMIN_PORT"]!)! + node - 1 }
    var redisPort: Int { Int(environment["REDIS_PORT"]!)! }
    var controlAdminPort: Int { Int(environment["CONTROL_ADMIN_PORT"]!)! }
    var controlPort: Int { Int(environment["CONTROL_PORT"]!)! }

    /// PID of a part started by the script (`redis`, `control`, `gateway-2`, …).
    func pid(_ name: String) -> Int32? {
        guard let text = try? String(contentsOfFile: directory + "/pids", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, parts[0] == name { return Int32(parts[1]) }
        }
        return nil
    }

    // MARK: Actions

    func token(scope: String = "orders:read") throws -> String {
        let client = try HTTPTestClient(port: controlPort)
        defer { client.close() }
        let basic = Data("\(env["CLIENT_ID"]!):\(env["CLIENT_SECRET"]!)".utf8).base64EncodedString()
        let response = try client.request("POST", "/oauth2/token", headers: [
            ("Authorization", "Basic \(basic)"), ("Content-Type", "application/x-www-form-urlencoded"), ("Connection", "close"),
        ], body: Array("grant_type=client_credentials&scope=\(scope)".utf8))
        guard response.status == 200, let token = response.json["access_token"] as? String else {
            throw FixtureError("token endpoint answered \(response.status): \(response.text)")
        }
        return token
    }

    /// Claims of a JWT, decoded without verification (test bookkeeping only).
    static func claims(_ token: String) -> [String: Any] {
        var payload = String(token.split(separator: ".")[1]).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while payload.count % 4 != 0 { payload += "=" }
        return (try? JSONSerialization.jsonObject(with: Data(base64Encoded: payload) ?? Data())) as? [String: Any] ?? [:]
    }

    func call(_ node: Int, _ path: String = "/orders/1", token: String?) throws -> HTTPTestResponse {
        let client = try HTTPTestClient(port: gatewayPort(node))
        defer { client.close() }
        return try client.request("GET", path, headers: token.map { [("Authorization", "Bearer \($0)")] } ?? [])
    }

    /// An admin API call with the cluster's credential.
    func admin(_ method: String, _ path: String, json: String? = nil) throws -> HTTPTestResponse {
        let client = try HTTPTestClient(port: controlAdminPort, timeout: 30)
        defer { client.close() }
        var headers = [("Authorization", "Bearer \(env["PORTCULLIS_ADMIN_TOKEN"]!)"), ("Connection", "close")]
        if json != nil { headers.append(("Content-Type", "application/json")) }
        return try client.request(method, path, headers: headers, body: json.map { Array($0.utf8) })
    }

    func revoke(jti: String, wait: Bool = true) throws -> HTTPTestResponse {
        let exp = Int(Date().timeIntervalSince1970) + 600
        return try admin("POST", "/v1/revocations" + (wait ? "?wait=5s" : ""), json: "{\"kind\":\"jti\",\"value\":\"\(jti)\",\"exp\":\(exp)}")
    }

    func metrics(adminPort: Int) throws -> String {
        let client = try HTTPTestClient(port: adminPort)
        defer { client.close() }
        return try client.request("GET", "/metrics", headers: [("Connection", "close")]).text
    }

    func isReady(_ node: Int) -> Bool {
        guard let client = try? HTTPTestClient(port: gatewayAdminPort(node), timeout: 1) else { return false }
        defer { client.close() }
        return (try? client.request("GET", "/readyz", headers: [("Connection", "close")]).status) == 200
    }

    /// Starts gateway `node` again with the script's command line (after it was killed).
    func restartGateway(_ node: Int) throws -> ManagedProcess {
        let process = try ManagedProcess(executable: PortcullisBinary.path, arguments: [
            "gateway", "--config", directory + "/gateway.yaml", "--listen", "127.0.0.1:\(gatewayPort(node))",
            "--admin-listen", "127.0.0.1:\(gatewayAdminPort(node))", "--node-id", "gw-\(node)",
        ], logFile: directory + "/logs/gateway-\(node)-restarted.log")
        restarted.append(process)
        return process
    }

    /// Starts redis-server again on the same port with the same data folder (its AOF).
    func restartRedis() throws -> ManagedProcess {
        let process = try ManagedProcess(executable: "redis-server", arguments: [
            PortcullisBinary.packageRoot + "/cluster/redis.conf", "--port", String(redisPort), "--dir", directory + "/redis",
        ], logFile: directory + "/logs/redis-restarted.log")
        restarted.append(process)
        return process
    }

    deinit {
        stop()
    }
}

/// wrk in the background against one gateway.
struct Load {
    let process: ManagedProcess

    init(port: Int, path: String = "/orders/load", token: String, seconds: Int, connections: Int = 4) throws {
        process = try ManagedProcess(executable: "wrk", arguments: [
            "-t1", "-c\(connections)", "-d\(seconds)s", "-H", "Authorization: Bearer \(token)", "http://127.0.0.1:\(port)\(path)",
        ])
    }

    /// (requests, non-2xx responses, socket errors) once wrk finished.
    func result() async -> (requests: Int, failures: Int, socketErrors: String?) {
        _ = await process.waitForExit(timeout: .seconds(120))
        var requests = 0, failures = 0
        var socketErrors: String?
        for line in process.output.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if line.contains("requests in"), let count = Int(fields.first ?? "") { requests = count }
            if line.contains("Non-2xx"), let count = Int(fields.last ?? "") { failures = count }
            if line.contains("Socket errors") { socketErrors = String(line) }
        }
        return (requests, failures, socketErrors)
    }
}

/// Polls `condition` until it holds; records an issue naming `what` if it never does.
@discardableResult
func eventually(timeout: Duration = .seconds(5), _ what: String, _ condition: () async throws -> Bool) async throws -> Bool {
    let held = try await Poll.until(timeout: timeout, condition)
    if !held { Issue.record("not within \(timeout): \(what)") }
    return held
}
