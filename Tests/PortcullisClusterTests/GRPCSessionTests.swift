import Foundation
import PortcullisTestSupport
import Testing

/// gRPC streams through real gateway processes ending with their tokens: Python grpcio as the
/// streaming server upstream and as the clients (Tests/PortcullisGatewayTests/Scripts/grpc_peer.py),
/// revocations written to a real Redis the way the control plane writes them.
@Suite("gRPC streams ending with their tokens", .serialized)
struct GRPCSessionTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../PortcullisGatewayTests/Scripts/grpc_peer.py").standardized.path

    struct Outcome: Decodable, CustomStringConvertible {
        let index: Int
        let code: String?
        let details: String?
        let ended_at: Double?
        let open_at_end: Bool
        let still_streaming: Bool
        var description: String { "#\(index) \(code ?? "open") '\(details ?? "")' streaming \(still_streaming)" }
    }

    @Test("a gRPC stream ends with UNAUTHENTICATED 'token expired' when its token reaches exp plus leeway")
    func expiryEndsTheStream() async throws {
        let serverPort = try FreePort.allocate()
        let directory = try TemporaryDirectory.make(prefix: "portcullis-grpc-expiry")
        let server = try ManagedProcess(executable: "/usr/bin/env", arguments: ["python3", Self.script, "server", String(serverPort)],
                                        logFile: directory + "/server.log")
        try await withCleanup(server, { _ = await $0.terminate() }) { server in
            #expect(try await Poll.until(timeout: .seconds(20)) { server.output.contains("ready") }, "grpc server: \(server.output)")
            try await withCluster { cluster in
                cluster.issuerLeeway = 1
                cluster.extraRoutes = """
                  - name: grpc
                    path_prefix: /pkg.Echo
                    upstream: {targets: [127.0.0.1:\(serverPort)], protocol: h2c}
                    auth: {type: jwt}
                """
                let gateway = try await cluster.startGateway(id: "gw-expiry")
                let now = Int64(Date().timeIntervalSince1970)
                let exp = now + 2
                let short = try cluster.signer.sign(claims: [
                    "iss": .string(TestCluster.issuer), "aud": .string(TestCluster.audience), "sub": .string("short"),
                    "jti": .string(UUID().uuidString), "iat": .integer(now - 1), "exp": .integer(exp),
                ])
                let planFile = directory + "/plan.json", out = directory + "/out.json"
                let ready = directory + "/ready", done = directory + "/done"
                try JSONSerialization.data(withJSONObject: [["port": gateway.port, "token": short]]).write(to: URL(fileURLWithPath: planFile))
                let clients = try ManagedProcess(executable: "/usr/bin/env", arguments: ["python3", Self.script, "hold", planFile, out, ready, done],
                                                 logFile: directory + "/clients.log")
                #expect(try await Poll.until(timeout: .seconds(30)) { FileManager.default.fileExists(atPath: ready) || !clients.isRunning })
                try await Task.sleep(for: .milliseconds(3200))
                _ = FileManager.default.createFile(atPath: done, contents: nil)
                #expect(await clients.waitForExit(timeout: .seconds(30)) == 0, "clients: \(clients.output)")
                let outcomes = try JSONDecoder().decode([Outcome].self, from: Data(contentsOf: URL(fileURLWithPath: out)))
                #expect(outcomes.first?.code == "UNAUTHENTICATED" && outcomes.first?.details?.contains("token expired") == true, "\(outcomes)")
                if let ended = outcomes.first?.ended_at {
                    let due = Double(exp + 1)
                    #expect(ended >= due - 0.05 && ended < due + 0.5, "ended \(ended - due) s from exp + leeway")
                }
            }
        }
    }
}
