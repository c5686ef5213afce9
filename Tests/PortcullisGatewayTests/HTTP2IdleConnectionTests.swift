@testable import PortcullisGateway
import Foundation
import PortcullisTestSupport
import Testing

/// How long an HTTP/2 client connection without streams lives, against a real gateway with
/// `limits.idle_timeout: 1s` and the HTTP/2 upstream of `HTTP2UpstreamFaultTests`. Clients from
/// `Scripts/idle_peer.py`.
@Suite("HTTP/2 idle connections", .serialized)
struct HTTP2IdleConnectionTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/idle_peer.py").path

    static func idle(_ mode: String, port: Int, seconds: Int) throws -> [String: Any] {
        let result = try runCommand("/usr/bin/env", ["python3", script, mode, String(port), String(seconds)])
        return (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]) ?? ["output": result.stdout + result.stderr]
    }

    @Test("an HTTP/2 connection that never opens a stream, or whose client never answers the idle close's PING, is closed within twice limits.idle_timeout; one with a stream open is not")
    func idleConnectionsAreClosed() async throws {
        let (upstream, upstreamPort) = try await HTTP2UpstreamFaultTests.startUpstream()
        try await withCleanup(upstream, { _ = await $0.terminate() }) { _ in
            let gateway = try await GatewayProcess.start { port, adminPort, _ in
                """
                listen: 127.0.0.1:\(port)
                admin_listen: 127.0.0.1:\(adminPort)
                event_loops: 1
                limits: {idle_timeout: 1s}
                routes:
                  - {name: h2, path_prefix: /, upstream: {targets: [127.0.0.1:\(upstreamPort)], protocol: h2c}}
                """
            }
            try await withCleanup(gateway, { await $0.stop() }) { gateway in
                // The build before kept both open for as long as the client liked.
                let preface = try Self.idle("preface", port: gateway.port, seconds: 6)
                #expect(((preface["closed_after"] as? Double) ?? .infinity) < 4, "\(preface)")
                let silent = try Self.idle("no-ping", port: gateway.port, seconds: 6)
                #expect(((silent["closed_after"] as? Double) ?? .infinity) < 4, "\(silent)")
                #expect(silent["goaway"] as? Int == 0, "the graceful close came first: \(silent)")
                // A stream open (its response waiting on the client's window) for 5 s: no idle close.
                let held = try Self.idle("held", port: gateway.port, seconds: 5)
                #expect(held["closed_after"] is NSNull, "\(held)")
            }
        }
    }
}
