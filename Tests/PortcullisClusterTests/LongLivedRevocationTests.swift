import Foundation
import PortcullisTestSupport
import Testing

/// Issue 18's revocation test: WebSockets and gRPC streams held open across three real gateway
/// processes, one subject revoked through a real Redis the way the control plane revokes, and
/// every connection checked — the revoked subject's closed the protocol's way, each node timing
/// its closes from applying the revocation (`portcullis_token_end_close_seconds`) and a loopback
/// capture (`WireClock`) timing each close on the wire from the revocation's acknowledgement;
/// everyone else's still carrying traffic.
@Suite("revoking a subject ends exactly its long-lived connections across nodes", .serialized)
struct LongLivedRevocationTests {
    /// A node's `portcullis_token_end_close_seconds` for `protocol`, closes by revocation.
    struct CloseTimes {
        let count: Double
        let sum: Double
        /// The smallest bucket bound every close fell within ("+Inf" when none did).
        let allWithin: String
        let within250ms: Double

        init(_ metrics: String, protocol name: String) {
            let labels = #"protocol="\#(name)",reason="token_revoked""#
            count = PrometheusText.sample(metrics, "portcullis_token_end_close_seconds_count{\(labels)}") ?? 0
            sum = PrometheusText.sample(metrics, "portcullis_token_end_close_seconds_sum{\(labels)}") ?? 0
            within250ms = PrometheusText.sample(metrics, "portcullis_token_end_close_seconds_bucket{\(labels),le=\"0.25\"}") ?? 0
            let count = count
            allWithin = ["0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "1"].first {
                PrometheusText.sample(metrics, "portcullis_token_end_close_seconds_bucket{\(labels),le=\"\($0)\"}") == count
            } ?? "+Inf"
        }
    }

    @Test("100 WebSockets and 100 gRPC streams across 3 gateways under 10 subjects: revoking one subject closes exactly its 10 WebSockets with 1008 and its 10 streams with UNAUTHENTICATED, each node closing them soon after applying the revocation; the other 180 keep carrying messages")
    func subjectRevocationEndsExactlyItsConnections() async throws {
        let grpcPort = try FreePort.allocate()
        let directory = try TemporaryDirectory.make(prefix: "portcullis-long-lived")
        let grpcServer = try ManagedProcess(executable: "/usr/bin/env", arguments: ["python3", GRPCSessionTests.script, "server", String(grpcPort)],
                                            logFile: directory + "/grpc-server.log")
        try await withCleanup(grpcServer, { _ = await $0.terminate() }) { grpcServer in
            #expect(try await Poll.until(timeout: .seconds(20)) { grpcServer.output.contains("ready") }, "grpc server: \(grpcServer.output)")
            try await withWebSocketCluster(extraRoutes: """
              - name: grpc
                path_prefix: /pkg.Echo
                upstream: {targets: [127.0.0.1:\(grpcPort)], protocol: h2c}
                auth: {type: jwt}
            """) { cluster, peers in
                for id in ["gw-1", "gw-2", "gw-3"] { try await cluster.startGateway(id: id) }
                let wireClock = try await WireClock(ports: cluster.gateways.map(\.port), directory: directory)
                try await withCleanup(wireClock.process, { _ = await $0.terminate() }) { _ in
                    var webSockets: [WebSocketPeers.Connection] = []
                    var streams: [[String: Any]] = []
                    var subjects: [String] = []
                    for index in 0..<100 {
                        let subject = "user-\(index % 10)"
                        subjects.append(subject)
                        webSockets.append(.init(url: cluster.gateways[index % 3].ws("/ws/\(index)"), token: try cluster.token(sub: subject)))
                        streams.append(["port": cluster.gateways[(index + 1) % 3].port, "token": try cluster.token(sub: subject)])
                    }
                    let planFile = directory + "/grpc-plan.json", out = directory + "/grpc-out.json"
                    let ready = directory + "/grpc-ready", done = directory + "/grpc-done"
                    try JSONSerialization.data(withJSONObject: streams).write(to: URL(fileURLWithPath: planFile))
                    let grpcClients = try ManagedProcess(executable: "/usr/bin/env",
                                                         arguments: ["python3", GRPCSessionTests.script, "hold", planFile, out, ready, done],
                                                         logFile: directory + "/grpc-clients.log")
                    try await withCleanup(grpcClients, { _ = await $0.terminate() }) { grpcClients in
                        #expect(try await Poll.until(timeout: .seconds(30)) { FileManager.default.fileExists(atPath: ready) || !grpcClients.isRunning },
                                "gRPC clients: \(grpcClients.output)")
                        var revokedAt = 0.0, acknowledgedAt = 0.0, doneAt = 0.0
                        guard let results = try await peers.run(webSockets, hold: 15, whileOpen: {
                            revokedAt = Date().timeIntervalSince1970
                            _ = try await cluster.revoke(.subject, "user-3", until: Int64(Date().timeIntervalSince1970) + 1)
                            acknowledgedAt = Date().timeIntervalSince1970
                            try await Task.sleep(for: .milliseconds(1500))
                            doneAt = Date().timeIntervalSince1970
                            _ = FileManager.default.createFile(atPath: done, contents: nil)
                        }) else { return }
                        let wire = try await wireClock.stop()
                        #expect(await grpcClients.waitForExit(timeout: .seconds(30)) == 0, "gRPC clients: \(grpcClients.output)")
                        let outcomes = try JSONDecoder().decode([GRPCSessionTests.Outcome].self, from: Data(contentsOf: URL(fileURLWithPath: out)))
                        #expect(results.count == 100 && outcomes.count == 100)

                        // What the clients saw: the revoked subject's connections closed the protocol's
                        // way (the clients' clocks bound this loosely: Python serves 200 connections);
                        // everyone else's open and still carrying messages.
                        #expect(results.allSatisfy { $0.openStatus == 101 && $0.echo == true })
                        var slowest = 0.0
                        for (result, subject) in zip(results, subjects) {
                            if subject == "user-3" {
                                #expect(result.closeCode == 1008 && result.closeReason == "token revoked", "\(result)")
                                slowest = max(slowest, (result.closedAt ?? .infinity) - revokedAt)
                            } else {
                                #expect(result.openAtEnd && result.echoAfter == true, "\(subject): \(result)")
                            }
                        }
                        for (outcome, subject) in zip(outcomes, subjects) {
                            if subject == "user-3" {
                                #expect(outcome.code == "UNAUTHENTICATED" && outcome.details?.contains("token revoked") == true, "\(outcome)")
                                slowest = max(slowest, (outcome.ended_at ?? .infinity) - revokedAt)
                            } else {
                                #expect(outcome.open_at_end && outcome.still_streaming, "\(subject): \(outcome)")
                            }
                        }
                        #expect(slowest < 1.0, "the slowest close reached its client \(slowest) s after the revocation call")

                        // What each node did: it closed every one of the revoked subject's connections
                        // it held soon after applying the revocation. The bound here is loose (debug
                        // builds, 200 Python peers on 2 cores: up to 50 ms seen); the 10 ms figure is
                        // release builds' (cluster/bench/token-end.sh, docs/benchmarks.md), which run
                        // this test.
                        var closed = (websocket: 0.0, grpc: 0.0)
                        var counted = (websocket: 0.0, grpc: 0.0)
                        for (number, gateway) in cluster.gateways.enumerated() {
                            let node = "gw-\(number + 1)"
                            let metrics = try gateway.metrics()
                            let propagation = (PrometheusText.sample(metrics, "portcullis_revocation_propagation_seconds_sum") ?? 0)
                                / max(1, PrometheusText.sample(metrics, "portcullis_revocation_propagation_seconds_count") ?? 0)
                            for name in ["websocket", "grpc"] {
                                let times = CloseTimes(metrics, protocol: name)
                                let ended = PrometheusText.sample(metrics, #"portcullis_sessions_closed_total{protocol="\#(name)",reason="token_revoked"}"#) ?? 0
                                if name == "websocket" { counted.websocket += ended } else { counted.grpc += ended }
                                #expect(times.within250ms == times.count,
                                        "\(node): \(Int(times.count - times.within250ms)) of its \(Int(times.count)) \(name) closes took over 250 ms")
                                if name == "websocket" { closed.websocket += times.count } else { closed.grpc += times.count }
                                print("token-end \(node) \(name): closed \(Int(times.count)), all within \(times.allWithin) s, mean \(String(format: "%.2f", times.sum / max(1, times.count) * 1000)) ms after applying the revocation; propagation mean \(String(format: "%.2f", propagation * 1000)) ms")
                            }
                        }
                        #expect(closed.websocket == 10 && closed.grpc == 10, "timed closes: \(closed)")
                        #expect(counted.websocket == 10 && counted.grpc == 10, "sessions ended as token_revoked: \(counted)")
                        print("token-end client: slowest close seen after the revocation call: \(Int(slowest * 1000)) ms")

                        // End to end on the wire: when each node's close frames and stream ends reached
                        // their clients' sockets (the kernel's clock), from the revocation's
                        // acknowledgement (its durable write returning to the revoker). Exactly the
                        // revoked subject's connections end, each node's as many as it counted; the
                        // 10 ms goal is release builds' (cluster/bench/token-end.sh).
                        let window = revokedAt..<doneAt
                        let webSocketCloses = wire.webSocketCloses(in: window), streamEnds = wire.streamEnds(in: window)
                        #expect(wire.lost == 0, "the capture missed bytes of \(wire.lost) connections")
                        #expect(webSocketCloses.count == 10 && webSocketCloses.allSatisfy { $0.code == 1008 },
                                "WebSocket closes on the wire: \(webSocketCloses.map { "\($0.port):\($0.code ?? 0)" })")
                        #expect(streamEnds.count == 10, "stream ends on the wire: \(streamEnds.count)")
                        for (number, gateway) in cluster.gateways.enumerated() {
                            let node = "gw-\(number + 1)"
                            let metrics = try gateway.metrics()
                            let propagation = (PrometheusText.sample(metrics, "portcullis_revocation_propagation_seconds_sum") ?? 0)
                                / max(1, PrometheusText.sample(metrics, "portcullis_revocation_propagation_seconds_count") ?? 0)
                            let ends = (websocket: webSocketCloses.filter { $0.port == gateway.port }, grpc: streamEnds.filter { $0.port == gateway.port })
                            #expect(Double(ends.websocket.count) == CloseTimes(metrics, protocol: "websocket").count
                                    && Double(ends.grpc.count) == CloseTimes(metrics, protocol: "grpc").count,
                                    "\(node): \(ends.websocket.count) WebSocket closes and \(ends.grpc.count) stream ends on the wire, against its metrics")
                            for (name, list) in [("websocket", ends.websocket), ("grpc", ends.grpc)] where !list.isEmpty {
                                let latest = list.map { $0.t - acknowledgedAt }.max() ?? 0
                                #expect(latest < 0.25, "\(node): a \(name) end reached the wire \(latest) s after the acknowledgement")
                                print("token-end wire \(node) \(name): ended \(list.count), slowest \(String(format: "%.2f", latest * 1000)) ms after the acknowledgement; propagation \(String(format: "%.2f", propagation * 1000)) ms; revocation call \(String(format: "%.2f", (acknowledgedAt - revokedAt) * 1000)) ms")
                            }
                        }
                    }
                }
            }
        }
    }
}
