import ArgumentParser
import PortcullisJOSE

struct AdminNodes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "nodes", abstract: "List live gateway nodes and how far each is behind.")

    @OptionGroup var connection: AdminConnection

    func run() async throws {
        let reply = try await adminCall { try await connection.client().get("/v1/nodes") }
        if connection.json { print(reply.body, terminator: ""); return }
        let rows = (reply.json["nodes"]?.arrayValue ?? []).map { node -> [String] in
            [
                AdminOutput.text(node["id"]), AdminOutput.text(node["address"]), AdminOutput.text(node["version"]),
                AdminOutput.duration(seconds: node["uptime_seconds"]), AdminOutput.text(node["applied_sequence"]),
                AdminOutput.text(node["revocation_lag"]?["sequences"]), AdminOutput.duration(seconds: node["revocation_lag"]?["seconds"]),
                AdminOutput.text(node["ratelimit_mode"]), AdminOutput.text(node["redis_connected"]), AdminOutput.text(node["keysets"]),
            ]
        }
        print("revocation sequence \(AdminOutput.text(reply.json["revocation_sequence"])), \(rows.count) live gateways")
        print(AdminOutput.table(["NODE", "ADDRESS", "VERSION", "UPTIME", "APPLIED", "LAG", "LAG_TIME", "RATELIMIT", "REDIS", "KEYSETS"], rows))
    }
}

struct AdminStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Cluster summary.")

    @OptionGroup var connection: AdminConnection

    func run() async throws {
        let reply = try await adminCall { try await connection.client().get("/v1/status") }
        if connection.json { print(reply.body, terminator: ""); return }
        let json = reply.json
        let nodes = json["nodes"]
        print("control plane  \(AdminOutput.text(json["control_plane"]?["node_id"])) \(AdminOutput.text(json["control_plane"]?["version"])) (peers: \(AdminOutput.text(json["control_plane"]?["peers"])))")
        print("revocations    sequence \(AdminOutput.text(json["revocations"]?["sequence"])), in force: \(AdminOutput.text(json["revocations"]?["in_force"]))")
        print("gateways       \(AdminOutput.text(nodes?["live"])) live, \(AdminOutput.text(nodes?["in_step"])) in step, lagging: \(AdminOutput.text(nodes?["lagging"])), max lag \(AdminOutput.text(nodes?["max_lag_sequences"])) (\(AdminOutput.duration(seconds: nodes?["max_lag_seconds"])))")
        print("               rate-limit fallback: \(AdminOutput.text(nodes?["ratelimit_fallback"])), Redis unreachable from: \(AdminOutput.text(nodes?["redis_disconnected"]))")
        if let server = json["authorization_server"], !server.isNull {
            print("auth server    \(AdminOutput.text(server["issuer"])) active kid \(AdminOutput.text(server["active_kid"])) (\(AdminOutput.text(server["signing_keys"])) keys)")
        }
        let rows = (json["issuers"]?.arrayValue ?? []).map { issuer in
            [AdminOutput.text(issuer["name"]), AdminOutput.text(issuer["version"]), AdminOutput.text(issuer["keys"]),
             AdminOutput.duration(seconds: issuer["age_seconds"]), AdminOutput.text(issuer["nodes_current"])]
        }
        if !rows.isEmpty { print(AdminOutput.table(["ISSUER", "VERSION", "KEYS", "AGE", "NODES_CURRENT"], rows)) }
    }
}

struct AdminRateLimits: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ratelimits", abstract: "Rate-limit policies and the current top consumers.")

    @OptionGroup var connection: AdminConnection
    @Option(help: "Consumers per policy (1-100).") var top: Int = 10

    func run() async throws {
        let reply = try await adminCall { try await connection.client().get("/v1/ratelimits?top=\(top)") }
        if connection.json { print(reply.body, terminator: ""); return }
        let policies = (reply.json["policies"]?.arrayValue ?? []).map { policy in
            ["name", "key", "limit", "window_seconds", "burst", "configured"].map { AdminOutput.text(policy[$0]) }
        }
        print(AdminOutput.table(["POLICY", "KEY", "LIMIT", "WINDOW_S", "BURST", "CONFIGURED"], policies))
        let consumers = (reply.json["top_consumers"]?.arrayValue ?? []).map { entry in
            ["policy", "key", "count", "utilization"].map { AdminOutput.text(entry[$0]) }
        }
        print("")
        print(AdminOutput.table(["POLICY", "CONSUMER", "COUNT", "UTILIZATION"], consumers))
    }
}

struct AdminAudit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "audit", abstract: "The newest audit-log entries.")

    @OptionGroup var connection: AdminConnection
    @Option(help: "How many (1-1000).") var count: Int = 20

    func run() async throws {
        let reply = try await adminCall { try await connection.client().get("/v1/audit?count=\(count)") }
        if connection.json { print(reply.body, terminator: ""); return }
        let rows = (reply.json["entries"]?.arrayValue ?? []).map { entry in
            [AdminOutput.time(millis: entry["at_ms"]), AdminOutput.text(entry["actor"]), AdminOutput.text(entry["action"]),
             AdminOutput.text(entry["target"]), AdminOutput.text(entry["from"]), AdminOutput.text(entry["outcome"])]
        }
        print(AdminOutput.table(["WHEN", "WHO", "WHAT", "TARGET", "FROM", "OUTCOME"], rows))
    }
}
