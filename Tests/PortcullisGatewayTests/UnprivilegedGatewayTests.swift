import Foundation
import PortcullisTestSupport
import Testing

/// The gateway as the packaging runs it: without capabilities (the systemd units' empty set, the
/// container's uid 10001, Kubernetes' `drop: [ALL]`). The build before asked for `TCP_NODELAY`
/// at the socket level, where its number is `SO_DEBUG`, which needs `CAP_NET_ADMIN`: as root it
/// passed unseen; without the capability every accepted connection was closed before a byte was
/// read, and every upstream connection failed, while `/readyz` said ready (an attacker review).
@Suite("gateway without capabilities")
struct UnprivilegedGatewayTests {
    @Test("a gateway without CAP_NET_ADMIN serves requests and reaches its upstream")
    func servesWithoutNetAdmin() async throws {
        let upstream = try await TestUpstream.start()
        let directory = try TemporaryDirectory.make(prefix: "portcullis-nocap")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let port = try FreePort.allocate(), adminPort = try FreePort.allocate()
        let config = directory + "/gateway.yaml"
        try """
        listen: 127.0.0.1:\(port)
        admin_listen: 127.0.0.1:\(adminPort)
        event_loops: 1
        routes:
          - {name: open, path_prefix: /, upstream: {targets: [\(upstream.address)]}}
        """.write(toFile: config, atomically: true, encoding: .utf8)
        // Root keeps its uid, but what it may do is cut to a bounding set without CAP_NET_ADMIN.
        let process = try ManagedProcess(executable: "/usr/bin/setpriv",
                                         arguments: ["--bounding-set=-net_admin", "--", PortcullisBinary.path, "gateway", "--config", config])
        defer { process.signal(SIGKILL) }
        try await Readiness.waitForHTTP(port: adminPort, path: "/readyz", timeout: .seconds(20))
        let status = try String(contentsOfFile: "/proc/\(process.pid)/status", encoding: .utf8)
        let effective = try #require(status.split(separator: "\n").first { $0.hasPrefix("CapEff:") }
            .flatMap { UInt64($0.split(separator: "\t").last ?? "", radix: 16) })
        #expect(effective & (1 << 12) == 0, "the gateway still holds CAP_NET_ADMIN: \(String(effective, radix: 16))")
        let response = try HTTPTestClient(port: port, timeout: 5).request("GET", "/hello")
        #expect(response.status == 200, "\(process.output)")
        await upstream.stop()
    }

    @Test("under the units' /proc (ProcSubset=pid: no /proc/meminfo) the memory guard still knows the machine's memory")
    func memoryGuardWithoutMeminfo() async throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-subset")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let port = try FreePort.allocate(), adminPort = try FreePort.allocate()
        let config = directory + "/gateway.yaml"
        try """
        listen: 127.0.0.1:\(port)
        admin_listen: 127.0.0.1:\(adminPort)
        event_loops: 1
        routes:
          - {name: open, path_prefix: /, upstream: {targets: ["127.0.0.1:1"]}}
        """.write(toFile: config, atomically: true, encoding: .utf8)
        // A mount namespace of its own whose /proc shows process folders only, as systemd's
        // `ProcSubset=pid` mounts it (the build before found no memory figure and turned the guard off).
        let process = try ManagedProcess(executable: "/usr/bin/unshare", arguments: [
            "--mount", "--pid", "--fork", "--propagation", "private", "--", "/bin/sh", "-c",
            "mount -t proc -o subset=pid proc /proc && test ! -e /proc/meminfo && exec \"$0\" gateway --config \"$1\"", PortcullisBinary.path, config,
        ])
        defer { process.signal(SIGKILL) }
        try await Readiness.waitForHTTP(port: adminPort, path: "/readyz", timeout: .seconds(20))
        let metrics = try HTTPTestClient(port: adminPort, timeout: 5).request("GET", "/metrics").text
        let limit = metrics.split(separator: "\n").first { $0.hasPrefix("portcullis_memory_limit_bytes ") }
            .flatMap { Double($0.split(separator: " ").last ?? "") }
        #expect((limit ?? 0) > 0, "\(process.output)")
        #expect(!process.output.contains("will not shed"), "\(process.output)")
    }
}
