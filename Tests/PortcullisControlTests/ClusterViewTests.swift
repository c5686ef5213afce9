import Foundation
import PortcullisTestSupport
import Testing

extension ControlPlaneTests {
    @Suite("propagation, nodes, status, metrics, CLI")
    struct ClusterViewTests {
        @Test("revoke with wait: every node applies it, each node's propagation is reported, laggards get 202")
        func propagation() async throws {
            // Heartbeats every second: a stopped node stays live for up to 3 s, well past the short wait below.
            let cluster = try await ControlCluster(gatewayHeartbeat: "1s")
            defer { Task { await cluster.shutdown() } }
            let gwA = try await cluster.startGateway(id: "gw-a")
            let gwB = try await cluster.startGateway(id: "gw-b")
            let control = cluster.control
            let token = try cluster.clientCredentials().access
            #expect(try cluster.statuses(token) == [200, 200])
            let jti = try #require(claims(of: token)["jti"] as? String)
            let exp = try #require(claims(of: token)["exp"] as? Int)

            let created = try control.admin("POST", "/v1/revocations?wait=5s", json: #"{"kind":"jti","value":"\#(jti)","exp":\#(exp)}"#)
            #expect(created.status == 201)
            let propagation = try #require(created.json["propagation"] as? [String: Any])
            #expect(propagation["complete"] as? Bool == true)
            #expect(propagation["live_nodes"] as? Int == 2)
            let nodes = propagation["nodes"] as? [[String: Any]] ?? []
            #expect(Set(nodes.compactMap { $0["id"] as? String }) == ["gw-a", "gw-b"])
            for node in nodes {
                #expect(node["applied"] as? Bool == true)
                let latency = try #require(node["latency_ms"] as? Double)
                #expect(latency >= 0 && latency < 5000)
            }
            // Applied means applied: both gateways now refuse the token.
            #expect(try cluster.statuses(token) == [401, 401])

            // A node that stops answering (SIGSTOP) is live until its record expires: a short wait
            // ends with 202 and names it.
            gwB.process.signal(SIGSTOP)
            let lagged = try control.admin("POST", "/v1/revocations?wait=500ms", json: #"{"kind":"subject","value":"carol"}"#)
            gwB.process.signal(SIGCONT)
            #expect(lagged.status == 202)
            let lagging = lagged.json["propagation"] as? [String: Any] ?? [:]
            #expect(lagging["complete"] as? Bool == false)
            #expect(lagging["laggards"] as? [String] == ["gw-b"])
            let id = try #require(lagged.json["id"] as? String)
            let later = try control.admin("GET", "/v1/revocations/\(id)?wait=5s")
            #expect(later.status == 200)
            #expect((later.json["propagation"] as? [String: Any])?["complete"] as? Bool == true)

            // Nodes: identity, applied sequence and lag, key sets, rate-limit mode, Redis link.
            try await eventually("both nodes listed with their key sets and Redis link (first heartbeats precede them)") {
                let nodes = try control.admin("GET", "/v1/nodes").json["nodes"] as? [[String: Any]] ?? []
                return nodes.count == 2 && nodes.allSatisfy {
                    $0["redis_connected"] as? Bool == true && ($0["keysets"] as? [String: String])?["builtin"] != nil
                }
            }
            let listed = try control.admin("GET", "/v1/nodes").json
            #expect(listed["revocation_sequence"] as? Int == 2)
            for node in listed["nodes"] as? [[String: Any]] ?? [] {
                #expect(node["applied_sequence"] as? Int == 2)
                #expect((node["revocation_lag"] as? [String: Any])?["sequences"] as? Int == 0)
                #expect(node["ratelimit_mode"] as? String == "cluster")
                #expect(node["redis_connected"] as? Bool == true)
                #expect((node["keysets"] as? [String: String])?["builtin"] != nil)
                #expect((node["uptime_seconds"] as? Double ?? -1) >= 0)
                #expect((node["address"] as? String)?.hasPrefix("127.0.0.1:") == true)
            }
            let one = try control.admin("GET", "/v1/nodes/gw-a")
            #expect(one.status == 200)
            #expect(one.json["id"] as? String == "gw-a")
            #expect(try control.admin("GET", "/v1/nodes/gw-z").status == 404)
            _ = gwA

            // The CLI prints per-node propagation.
            let other = try cluster.clientCredentials().access
            let otherJTI = try #require(claims(of: other)["jti"] as? String)
            let cli = try runCommand(PortcullisBinary.path, ["admin", "revoke", "--jti=\(otherJTI)", "--wait", "--endpoint", control.adminURL],
                                     environment: ["PORTCULLIS_ADMIN_TOKEN": ControlCluster.adminToken])
            #expect(cli.status == 0, "\(cli.stderr)")
            #expect(cli.stdout.contains("2/2 live gateways applied it"))
            #expect(cli.stdout.contains("gw-a"))
            #expect(cli.stdout.contains("gw-b"))
            #expect(cli.stdout.contains(" ms"))
            #expect(try cluster.statuses(other) == [401, 401])
        }

        /// The build before answered 503 — "nothing was changed, retry" — and audited the call as
        /// unavailable when Redis stalled after the revocation was written, though it was in force
        /// (an attacker review).
        @Test("a revocation whose propagation cannot be read once it is written (Redis paused past the command timeout during its wait) is answered 202 with its id and the propagation unknown, audited ok, and in force")
        func propagationUnreadableAfterWrite() async throws {
            let cluster = try await ControlCluster(gatewayHeartbeat: "1s")
            defer { Task { await cluster.shutdown() } }
            let gateway = try await cluster.startGateway(id: "gw-a")
            let control = cluster.control
            // The gateway holds its acknowledgement, so the wait reads the propagation again and again.
            gateway.process.signal(SIGSTOP)
            defer { gateway.process.signal(SIGCONT) }
            let answer = Task.detached { try control.admin("POST", "/v1/revocations?wait=8s", json: #"{"kind":"subject","value":"dora"}"#) }
            // Once the change is written, Redis stops answering for longer than the control plane's
            // command timeout (2 s): a propagation read during the wait fails.
            #expect(try await Poll.until(timeout: .seconds(5)) {
                (try control.admin("GET", "/v1/revocations?kind=subject&value=dora").json["items"] as? [Any])?.isEmpty == false
            })
            _ = try cluster.redis.cli("CLIENT", "PAUSE", "3000", "ALL")
            let response = try await answer.value
            gateway.process.signal(SIGCONT)
            #expect(response.status == 202, "\(response.status) \(response.text)")
            #expect((response.json["propagation"] as? [String: Any])?["unknown"] as? String != nil, "\(response.text)")
            let id = try #require(response.json["id"] as? String)
            let later = try control.admin("GET", "/v1/revocations/\(id)?wait=5s")
            #expect(later.status == 200 && (later.json["propagation"] as? [String: Any])?["complete"] as? Bool == true, "\(later.text)")
            let audit = try control.admin("GET", "/v1/audit?count=20").json["entries"] as? [[String: Any]] ?? []
            let created = audit.filter { $0["action"] as? String == "revocation.create" }
            #expect(created.count == 1 && created.first?["outcome"] as? String == "ok"
                    && (created.first?["details"] as? [String: String])?["id"] == id, "\(created)")
        }

        @Test("status, rate limits, metrics (clean under promtool) and the CLI's tables and --json")
        func statusMetricsAndCLI() async throws {
            let cluster = try await ControlCluster(controlExtra: "rate_limits:\n  - {name: per-client, key: client_id, limit: 100000, window: 1h}\n")
            defer { Task { await cluster.shutdown() } }
            try await cluster.startGateway(id: "gw-1")
            let control = cluster.control
            let token = try cluster.clientCredentials().access
            for _ in 0..<5 { #expect(try cluster.statuses(token) == [200]) }
            #expect(try control.admin("POST", "/v1/revocations?wait=5s", json: #"{"kind":"client","value":"x-app"}"#).status == 201)

            try await eventually("status shows one node in step, holding the built-in key set") {
                let status = try control.admin("GET", "/v1/status").json
                let nodes = status["nodes"] as? [String: Any]
                let issuers = status["issuers"] as? [[String: Any]] ?? []
                return nodes?["live"] as? Int == 1 && nodes?["in_step"] as? Int == 1 && issuers.first?["nodes_current"] as? Int == 1
            }
            let status = try control.admin("GET", "/v1/status").json

            #expect((status["control_plane"] as? [String: Any])?["peers"] as? [String] == ["control-1"])
            #expect((status["revocations"] as? [String: Any])?["sequence"] as? Int == 1)
            #expect(((status["revocations"] as? [String: Any])?["in_force"] as? [String: Int])?["client"] == 1)
            let server = status["authorization_server"] as? [String: Any]
            #expect((server?["active_kid"] as? String)?.hasPrefix("as-") == true)
            let issuers = status["issuers"] as? [[String: Any]] ?? []
            #expect(issuers.first?["name"] as? String == "builtin")
            #expect(issuers.first?["nodes_current"] as? Int == 1)

            try await eventually(timeout: .seconds(5), "demo-client is the top consumer") {
                let top = try control.admin("GET", "/v1/ratelimits?top=5").json["top_consumers"] as? [[String: Any]] ?? []
                return top.contains { $0["policy"] as? String == "per-client" && $0["key"] as? String == "client:builtin/demo-client" && ($0["count"] as? Int ?? 0) >= 5 }
            }
            let policies = try control.admin("GET", "/v1/ratelimits").json["policies"] as? [[String: Any]] ?? []
            #expect(policies.first?["limit"] as? Int == 100000)
            #expect(policies.first?["configured"] as? Bool == true)
            #expect(try control.admin("GET", "/v1/ratelimits?top=1000").status == 400)

            // Metrics: the cluster view, clean under promtool.
            try await eventually(timeout: .seconds(5), "metrics show the live node and the propagation histogram") {
                let text = try control.metrics()
                return text.contains("portcullis_cluster_live_nodes 1") && text.contains("portcullis_cluster_revocation_propagation_seconds_count 1")
            }
            let metrics = try control.metrics()
            for name in ["portcullis_admin_requests_total", "portcullis_revocations_total", "portcullis_node_revocation_lag_sequences{node=\"gw-1\"} 0",
                         "portcullis_node_revocation_lag_seconds{node=\"gw-1\"}", "portcullis_cluster_keyset_age_seconds{issuer=\"builtin\"}",
                         "portcullis_cluster_nodes_ratelimit_fallback 0", "portcullis_oauth_token_requests_total", "portcullis_redis_connected 1"] {
                #expect(metrics.contains(name), "\(name)")
            }
            let file = control.directory + "/metrics.txt"
            try metrics.write(toFile: file, atomically: true, encoding: .utf8)
            let promtool = try runCommand("/bin/sh", ["-c", "promtool check metrics < \(file)"])
            #expect(promtool.status == 0, "\(promtool.stdout) \(promtool.stderr)")
            let config = try runCommand("/usr/bin/promtool", ["check", "config", PortcullisBinary.packageRoot + "/cluster/prometheus.yml"])
            #expect(config.status == 0, "\(config.stdout) \(config.stderr)")

            // The CLI: tables by default, the API's JSON with --json, credential from the environment.
            let environment = ["PORTCULLIS_ADMIN_URL": control.adminURL, "PORTCULLIS_ADMIN_TOKEN": ControlCluster.adminToken]
            let nodes = try runCommand(PortcullisBinary.path, ["admin", "nodes"], environment: environment)
            #expect(nodes.status == 0, "\(nodes.stderr)")
            #expect(nodes.stdout.contains("NODE"))
            #expect(nodes.stdout.contains("gw-1"))
            let json = try runCommand(PortcullisBinary.path, ["admin", "status", "--json"], environment: environment)
            #expect(json.status == 0)
            #expect((try? JSONSerialization.jsonObject(with: Data(json.stdout.utf8))) is [String: Any])
            let keys = try runCommand(PortcullisBinary.path, ["admin", "keys", "builtin"], environment: environment)
            #expect(keys.stdout.contains("active"))
            let list = try runCommand(PortcullisBinary.path, ["admin", "revocations", "--kind", "client"], environment: environment)
            #expect(list.stdout.contains("x-app"))
            // A token from a file (kept off the process list).
            let tokenFile = FileManager.default.temporaryDirectory.appendingPathComponent("portcullis-admin-token-\(UUID().uuidString)").path
            try (ControlCluster.adminToken + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: tokenFile) }
            let fromFile = try runCommand(PortcullisBinary.path, ["admin", "status", "--json", "--endpoint", control.adminURL, "--token-file", tokenFile])
            #expect(fromFile.status == 0, "\(fromFile.stderr)")
            let denied = try runCommand(PortcullisBinary.path, ["admin", "status"], environment: ["PORTCULLIS_ADMIN_URL": control.adminURL, "PORTCULLIS_ADMIN_TOKEN": "wrong"])
            #expect(denied.status == 1)
            #expect(denied.stderr.contains("unauthorized"))
            let rotate = try runCommand(PortcullisBinary.path, ["admin", "rotate"], environment: environment)
            #expect(rotate.status == 0, "\(rotate.stderr)")
            #expect(rotate.stdout.contains("signing with as-"))
            // The key it replaced, retired: its key revocation named.
            let previous = try #require(rotate.stdout.components(separatedBy: "(previous: ").dropFirst().first?.prefix { $0 != ")" })
            let retire = try runCommand(PortcullisBinary.path, ["admin", "retire-key", "--kid", String(previous)], environment: environment)
            #expect(retire.status == 0 && retire.stdout.contains("retired \(previous) (key revocation rev_"), "\(retire.stdout) \(retire.stderr)")
        }
    }
}
