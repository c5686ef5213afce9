import Foundation
import PortcullisCluster
import PortcullisJOSE
import PortcullisTestSupport
import Testing

/// WebSockets through real gateway processes, with Python `websockets` as the client and as the
/// upstream echo server (Scripts/websocket_peers.py), and revocations written to a real Redis the
/// way the control plane writes them.
@Suite("WebSocket through the gateway, and closing it when its token ends", .serialized)
struct WebSocketSessionTests {
    @Test("an upgrade is admitted like any request: echoed when allowed, 401 without a token, refused on a route without websocket, a failing upstream handshake relayed, an unreachable upstream 502; refused ones never reach the upstream")
    func admission() async throws {
        try await withWebSocketCluster { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            let token = try cluster.token()
            guard let results = try await peers.run([
                .init(url: gateway.ws("/ws/echo"), token: token),
                .init(url: gateway.ws("/ws/notoken"), token: nil),
                .init(url: gateway.ws("/ws-off/x"), token: token),
                .init(url: gateway.ws("/ws/reject"), token: token),
                .init(url: gateway.ws("/ws-dead/x"), token: token),
            ], hold: 0) else { return }
            #expect(results.map(\.openStatus) == [101, 401, 403, 403, 502])
            #expect(results[0].echo == true && results[0].echoAfter == true)
            let log = peers.upstreamLog()
            #expect(log.contains("/ws/echo auth"))
            #expect(log.contains("/ws/reject auth"))
            #expect(!log.contains("notoken") && !log.contains("/ws-off"), "refused upgrades reached the upstream:\n\(log)")
            let metrics = try gateway.metrics()
            #expect(PrometheusText.sample(metrics, "portcullis_sessions_closed_total{protocol=\"websocket\",reason=\"client\"}") == 1)
            #expect(PrometheusText.sample(metrics, "portcullis_sessions_open{protocol=\"websocket\"}") == 0)
        }
    }

    @Test("a client that leaves during the handshake leaves nothing behind: the upstream's WebSocket is closed and no session opens")
    func clientLeavesDuringHandshake() async throws {
        try await withWebSocketCluster { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            // The upstream answers "slow" paths after 0.5 s; the client leaves after 0.1 s.
            guard let results = try await peers.run([
                .init(url: "", token: try cluster.token(), abortAfter: 0.1, host: "127.0.0.1", port: gateway.port, path: "/ws/slow"),
            ], hold: 0) else { return }
            #expect(results[0].openStatus == 0)
            try await eventually("the upstream's WebSocket is closed") { peers.upstreamLog().contains("/ws/slow closed") }
            #expect((PrometheusText.sample(try gateway.metrics(), "portcullis_sessions_open{protocol=\"websocket\"}") ?? 0) == 0)
        }
    }

    @Test("revoking the token's jti closes its WebSocket with 1008 within a second; the same token on an on_token_end: allow route and another token stay open")
    func revokedJTI() async throws {
        try await withWebSocketCluster { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            let revoked = try cluster.token(jti: "ws-jti-1")
            let other = try cluster.token(jti: "ws-jti-2")
            var revokedAt = 0.0
            guard let results = try await peers.run([
                .init(url: gateway.ws("/ws/a"), token: revoked),
                .init(url: gateway.ws("/ws-allow/a"), token: revoked),
                .init(url: gateway.ws("/ws/b"), token: other),
            ], hold: 10, whileOpen: {
                revokedAt = Date().timeIntervalSince1970
                _ = try await cluster.revoke(.jti, "ws-jti-1")
                try await Task.sleep(for: .milliseconds(1200))
            }) else { return }
            #expect(results.map(\.openStatus) == [101, 101, 101])
            #expect(results[0].closeCode == 1008 && results[0].closeReason == "token revoked", "\(results[0])")
            if let closedAt = results[0].closedAt { #expect(closedAt - revokedAt < 1.0, "closed \(closedAt - revokedAt) s after the revocation") }
            #expect(results[1].openAtEnd && results[1].echoAfter == true, "\(results[1])")
            #expect(results[2].openAtEnd && results[2].echoAfter == true, "\(results[2])")
            #expect(PrometheusText.sample(try gateway.metrics(), "portcullis_sessions_closed_total{protocol=\"websocket\",reason=\"token_revoked\"}") == 1)
        }
    }

    @Test("a WebSocket closes with 1008 when its token reaches exp plus leeway; on an on_token_end: allow route it stays open")
    func expiry() async throws {
        try await withWebSocketCluster(leeway: 1) { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            let now = Int64(Date().timeIntervalSince1970)
            let exp = now + 2
            let short = try cluster.signer.sign(claims: [
                "iss": .string(TestCluster.issuer), "aud": .string(TestCluster.audience), "sub": .string("short"),
                "jti": .string(UUID().uuidString), "iat": .integer(now - 1), "exp": .integer(exp),
            ])
            guard let results = try await peers.run([
                .init(url: gateway.ws("/ws/short"), token: short),
                .init(url: gateway.ws("/ws-allow/short"), token: short),
            ], hold: 4.5) else { return }
            #expect(results.map(\.openStatus) == [101, 101])
            #expect(results[0].closeCode == 1008 && results[0].closeReason == "token expired", "\(results[0])")
            if let closedAt = results[0].closedAt {
                let due = Double(exp + 1)
                #expect(closedAt >= due - 0.05 && closedAt < due + 0.5, "closed \(closedAt - due) s from exp + leeway")
            }
            #expect(results[1].openAtEnd && results[1].echoAfter == true, "\(results[1])")
        }
    }

    @Test("the idle timeout closes a silent WebSocket with 1001; a frame over max_frame_bytes closes it with 1009")
    func limits() async throws {
        try await withWebSocketCluster { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            let token = try cluster.token()
            let started = Date().timeIntervalSince1970
            guard let results = try await peers.run([
                .init(url: gateway.ws("/ws-idle/x"), token: token),
                .init(url: gateway.ws("/ws/big"), token: token, sendAfterReady: 70_000),
                .init(url: gateway.ws("/ws/small"), token: token, sendAfterReady: 60_000),
            ], hold: 3) else { return }
            #expect(results[0].closeCode == 1001 && results[0].closeReason == "idle timeout", "\(results[0])")
            if let closedAt = results[0].closedAt { #expect(closedAt - started >= 0.9, "idle close after \(closedAt - started) s") }
            #expect(results[1].closeCode == 1009, "\(results[1])")
            #expect(results[2].openAtEnd && results[2].echoAfter == true, "\(results[2])")
            let metrics = try gateway.metrics()
            #expect(PrometheusText.sample(metrics, "portcullis_sessions_closed_total{protocol=\"websocket\",reason=\"idle_timeout\"}") == 1)
            #expect(PrometheusText.sample(metrics, "portcullis_sessions_closed_total{protocol=\"websocket\",reason=\"too_large\"}") == 1)
        }
    }

    @Test("100 WebSockets across 3 gateways under 10 subjects: revoking one subject closes exactly its 10 with 1008, each within a second of the revocation; the other 90 stay open and echo")
    func subjectRevocationAcrossNodes() async throws {
        try await withWebSocketCluster { cluster, peers in
            for id in ["gw-1", "gw-2", "gw-3"] { try await cluster.startGateway(id: id) }
            var plan: [WebSocketPeers.Connection] = []
            var subjects: [String] = []
            for index in 0..<100 {
                let subject = "user-\(index % 10)"
                subjects.append(subject)
                plan.append(.init(url: cluster.gateways[index % 3].ws("/ws/\(index)"), token: try cluster.token(sub: subject)))
            }
            var revokedAt = 0.0
            guard let results = try await peers.run(plan, hold: 15, whileOpen: {
                revokedAt = Date().timeIntervalSince1970
                _ = try await cluster.revoke(.subject, "user-3", until: Int64(Date().timeIntervalSince1970) + 1)
                try await Task.sleep(for: .milliseconds(1500))
            }) else { return }
            #expect(results.allSatisfy { $0.openStatus == 101 && $0.echo == true })
            var slowest = 0.0
            for (result, subject) in zip(results, subjects) {
                if subject == "user-3" {
                    #expect(result.closeCode == 1008 && result.closeReason == "token revoked", "\(result)")
                    if let closedAt = result.closedAt {
                        slowest = max(slowest, closedAt - revokedAt)
                        #expect(closedAt - revokedAt < 1.0, "connection \(result.index) closed \(closedAt - revokedAt) s after the revocation")
                    }
                } else {
                    #expect(result.openAtEnd && result.echoAfter == true, "\(subject): \(result)")
                }
            }
            print("slowest close after the revocation call: \(Int(slowest * 1000)) ms")
        }
    }
}

/// A cluster whose gateways have WebSocket routes to the Python echo server.
func withWebSocketCluster(leeway: Int? = nil, _ body: (TestCluster, WebSocketPeers) async throws -> Void) async throws {
    let peers = try await WebSocketPeers.start()
    try await withCleanup(peers, { await $0.stop() }) { peers in
        guard let echo = peers.echoAddress else { return }
        try await withCluster { cluster in
            cluster.issuerLeeway = leeway
            cluster.extraRoutes = """
              - name: ws
                path_prefix: /ws
                upstream: {targets: [\(echo)]}
                auth: {type: jwt}
                websocket: {max_frame_bytes: 64KiB}
              - name: ws-allow
                path_prefix: /ws-allow
                upstream: {targets: [\(echo)]}
                auth: {type: jwt}
                websocket: true
                on_token_end: allow
              - name: ws-idle
                path_prefix: /ws-idle
                upstream: {targets: [\(echo)]}
                auth: {type: jwt}
                websocket: {idle_timeout: 1s}
              - name: ws-dead
                path_prefix: /ws-dead
                upstream: {targets: [127.0.0.1:1]}
                auth: {type: jwt}
                websocket: true
              - name: ws-off
                path_prefix: /ws-off
                upstream: {targets: [\(echo)]}
                auth: {type: jwt}
            """
            try await body(cluster, peers)
        }
    }
}

extension GatewayProcess {
    func ws(_ path: String) -> String { "ws://127.0.0.1:\(port)\(path)" }
}

/// The Python peers: an echo server that runs for the whole test, and client runs.
final class WebSocketPeers: Sendable {
    struct Connection: Encodable {
        let url: String
        let token: String?
        /// Sends a binary message this large once every connection is open, and reads its echo.
        var sendAfterReady: Int? = nil
        /// Instead of a WebSocket client: a raw upgrade request to `host`:`port` `path`, whose
        /// connection closes after this many seconds without waiting for an answer.
        var abortAfter: Double? = nil
        var host: String? = nil
        var port: Int? = nil
        var path: String? = nil

        enum CodingKeys: String, CodingKey {
            case url, token, host, port, path
            case sendAfterReady = "send_after_ready", abortAfter = "abort_after"
        }
    }

    struct Result: Decodable, CustomStringConvertible {
        let index: Int
        let openStatus: Int?
        let echo: Bool?
        let echoAfter: Bool?
        let closeCode: Int?
        let closeReason: String?
        let closedAt: Double?
        let openAtEnd: Bool

        enum CodingKeys: String, CodingKey {
            case index, echo
            case openStatus = "open_status", echoAfter = "echo_after", closeCode = "close_code", closeReason = "close_reason"
            case closedAt = "closed_at", openAtEnd = "open_at_end"
        }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            index = try c.decode(Int.self, forKey: .index)
            openStatus = try c.decodeIfPresent(Int.self, forKey: .openStatus)
            echo = try c.decodeIfPresent(Bool.self, forKey: .echo)
            echoAfter = try c.decodeIfPresent(Bool.self, forKey: .echoAfter)
            closeCode = try c.decodeIfPresent(Int.self, forKey: .closeCode)
            closeReason = try c.decodeIfPresent(String.self, forKey: .closeReason)
            closedAt = try c.decodeIfPresent(Double.self, forKey: .closedAt)
            openAtEnd = try c.decodeIfPresent(Bool.self, forKey: .openAtEnd) ?? false
        }

        var description: String {
            "#\(index) status \(openStatus.map(String.init) ?? "-") close \(closeCode.map(String.init) ?? "-") '\(closeReason ?? "")' open at end \(openAtEnd) echo after \(echoAfter.map(String.init) ?? "-")"
        }
    }

    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/websocket_peers.py").path

    let directory: String
    let server: ManagedProcess
    /// `127.0.0.1:port` of the echo server; nil when Python `websockets` is missing.
    let echoAddress: String?

    private init(directory: String, server: ManagedProcess, echoAddress: String?) {
        self.directory = directory
        self.server = server
        self.echoAddress = echoAddress
    }

    static func start() async throws -> WebSocketPeers {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-ws")
        let server = try ManagedProcess(executable: "/usr/bin/env",
                                        arguments: ["python3", script, "server", "--port-file", directory + "/port", "--log", directory + "/upstream.log"],
                                        logFile: directory + "/server.out")
        var address: String?
        _ = try await Poll.until(timeout: .seconds(10)) {
            if let port = try? String(contentsOfFile: directory + "/port", encoding: .utf8) {
                address = "127.0.0.1:\(port)"
                return true
            }
            return !server.isRunning
        }
        if address == nil {
            if !server.isRunning, await server.waitForExit(timeout: .seconds(1)) == 77 {
                Issue.record("Python websockets is missing (cluster/setup.sh installs it)")
            } else {
                Issue.record("the echo server did not start:\n\(server.output)")
            }
        }
        return WebSocketPeers(directory: directory, server: server, echoAddress: address)
    }

    func upstreamLog() -> String {
        (try? String(contentsOfFile: directory + "/upstream.log", encoding: .utf8)) ?? ""
    }

    /// Opens `plan`'s connections (each echoes once), then watches them for `hold` seconds, or
    /// until `whileOpen` (if given) has run; returns what each saw.
    func run(_ plan: [Connection], hold: Double, whileOpen: (() async throws -> Void)? = nil) async throws -> [Result]? {
        let run = UUID().uuidString.prefix(8)
        let prefix = "\(directory)/run-\(run)"
        try JSONEncoder().encode(plan).write(to: URL(fileURLWithPath: prefix + ".plan.json"))
        let clients = try ManagedProcess(executable: "/usr/bin/env",
                                         arguments: ["python3", Self.script, "clients", "--plan", prefix + ".plan.json", "--out", prefix + ".out.json",
                                                     "--ready", prefix + ".ready", "--done", prefix + ".done", "--hold", String(hold)],
                                         logFile: prefix + ".clients.log")
        let ready = try await Poll.until(timeout: .seconds(30)) {
            FileManager.default.fileExists(atPath: prefix + ".ready") || !clients.isRunning
        }
        guard ready, FileManager.default.fileExists(atPath: prefix + ".ready") else {
            Issue.record("the WebSocket clients did not get ready:\n\(clients.output)")
            await clients.kill()
            return nil
        }
        if let whileOpen {
            try await whileOpen()
            _ = FileManager.default.createFile(atPath: prefix + ".done", contents: nil)
        }
        guard await clients.waitForExit(timeout: .seconds(hold + 30)) == 0,
              let data = FileManager.default.contents(atPath: prefix + ".out.json") else {
            Issue.record("the WebSocket clients failed:\n\(clients.output)")
            await clients.kill()
            return nil
        }
        return try JSONDecoder().decode([Result].self, from: data)
    }

    func stop() async {
        _ = await server.terminate()
    }
}
