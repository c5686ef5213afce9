import Foundation
import PortcullisTestSupport
import Testing

/// SIGHUP on the control plane: admin credentials, `max_wait`, `rate_limits` and certificates
/// reload whole, or nothing (docs/operations.md, "Reloading the configuration").
@Suite("control plane: configuration reload", .serialized)
struct ControlReloadTests {
    static func reloads(_ control: ControlProcess, _ result: String) throws -> Double {
        PrometheusText.sample(try control.metrics(), "portcullis_config_reloads_total{result=\"\(result)\"}") ?? -1
    }

    @Test("SIGHUP swaps the admin tokens; a bad file or a changed start-only key changes nothing and is counted")
    func reloadAdminTokens() async throws {
        let cluster = try await ControlCluster(authorizationServer: false)
        defer { Task { await cluster.shutdown() } }
        let control = cluster.control
        let file = control.directory + "/control-1.yaml"
        let original = try String(contentsOfFile: file, encoding: .utf8)
        let newToken = "rotated-admin-token-5c1e"
        #expect(try control.admin("GET", "/v1/status", token: newToken).status == 401)

        // The second credential is replaced by a new one.
        let rotated = original.replacingOccurrences(of: sha256Hex("another-admin-token"), with: sha256Hex(newToken))
        try rotated.write(toFile: file, atomically: true, encoding: .utf8)
        control.process.signal(SIGHUP)
        #expect(try await eventually("the reload is counted") { try Self.reloads(control, "success") == 1 })
        #expect(try control.admin("GET", "/v1/status", token: newToken).status == 200)
        #expect(try control.admin("GET", "/v1/status", token: "another-admin-token").status == 401)

        // Broken YAML, then a changed listener: the rotated credentials stay, each failure is named and counted.
        try (rotated + "\nadmin_tokens: [").write(toFile: file, atomically: true, encoding: .utf8)
        control.process.signal(SIGHUP)
        #expect(try await eventually("the failure is counted") { try Self.reloads(control, "failure") == 1 })
        let moved = rotated.replacingOccurrences(of: "listen: 127.0.0.1:\(control.port)", with: "listen: 127.0.0.1:1")
            .replacingOccurrences(of: sha256Hex(newToken), with: sha256Hex("another-admin-token"))
        try moved.write(toFile: file, atomically: true, encoding: .utf8)
        control.process.signal(SIGHUP)
        #expect(try await eventually("the second failure is counted") { try Self.reloads(control, "failure") == 2 })
        #expect(try control.admin("GET", "/v1/status", token: newToken).status == 200)
        #expect(try control.admin("GET", "/v1/status", token: "another-admin-token").status == 401)
        #expect(try Self.reloads(control, "success") == 1)
        let log = control.process.output
        #expect(log.range(of: #"control-1\.yaml:\d+.*listen: changed, but it applies only at start"#, options: .regularExpression) != nil, "\(log)")
        #expect(log.contains("reload failed"))
    }
}
