import Foundation
import PortcullisTestSupport
import Testing

extension ControlPlaneTests {
    /// The control plane's listeners face end users (the authorization server) and operators; the
    /// build before held every connection a client opened for as long as it liked (Hummingbird
    /// sets no idle timeout and no bound), so idle connections could take every file descriptor
    /// of the process, its Redis link's included.
    @Suite("control plane listener limits")
    struct ControlListenerLimitsTests {
        @Test("each listener closes connections past limits.max_connections at once and idle ones after limits.idle_timeout; then it serves again")
        func idleAndExcessConnectionsAreClosed() async throws {
            let cluster = try await ControlCluster(controlExtra: "limits: {idle_timeout: 2s, max_connections: 20}\n")
            defer { Task { await cluster.shutdown() } }
            let control = cluster.control
            for port in [control.port, control.adminPort] {
                let clients = try (0..<30).map { _ in try HTTPTestClient(port: port, timeout: 5) }
                defer { clients.forEach { $0.close() } }
                try await Task.sleep(for: .milliseconds(500))
                let atOnce = clients.filter(\.closedByPeer).count
                #expect(atOnce == 10, "port \(port): \(atOnce) of 30 closed at once")
                try await Task.sleep(for: .milliseconds(2500))
                let later = clients.filter(\.closedByPeer).count
                #expect(later == 30, "port \(port): \(later) of 30 closed after the idle timeout")
            }
            #expect(try control.get(port: control.port, "/healthz").status == 200)
            #expect(try control.admin("GET", "/v1/status").status == 200)
        }

        @Test("limits: values out of range are configuration errors naming the key")
        func limitsAreValidated() throws {
            let directory = try TemporaryDirectory.make(prefix: "control-limits")
            for (limits, key) in [("{idle_timeout: 0s}", "idle_timeout"), ("{max_connections: 0}", "max_connections"), ("{max_conns: 5}", "max_conns")] {
                let file = directory + "/control.yaml"
                try """
                cluster: {redis: redis://127.0.0.1:1, secret_file: \(directory)/secret}
                admin_tokens: [{name: ops, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}]
                limits: \(limits)
                """.write(toFile: file, atomically: true, encoding: .utf8)
                try String(repeating: "s", count: 43).write(toFile: directory + "/secret", atomically: true, encoding: .utf8)
                let check = try runCommand(PortcullisBinary.path, ["control", "--config", file, "--check"])
                #expect(check.status == 2 && check.stderr.contains(key), "\(limits): \(check.status) \(check.stderr)")
            }
        }
    }
}
