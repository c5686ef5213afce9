import Foundation
import PortcullisTestSupport
import Testing

/// The gateway as the packaging runs it: without capabilities (the systemd units' empty set, the
/// container's uid 10001, Kubernetes' `drop: [ALL]`) and under the units' `/proc`. Both need root
/// to arrange (dropping a capability from the bounding set, mounting a `/proc`); skipped without
/// it, a failure under `CI=true`.
@Suite("gateway without capabilities",
       .enabled(if: getuid() == 0 || NetworkNamespace.required, "needs root to drop capabilities and mount /proc; skipped here (under CI=true: a failure)"))
struct UnprivilegedGatewayTests {
    static func config(port: Int, adminPort: Int, upstream: String) -> String {
        """
        listen: 127.0.0.1:\(port)
        admin_listen: 127.0.0.1:\(adminPort)
        event_loops: 1
        routes:
          - {name: open, path_prefix: /, upstream: {targets: ["\(upstream)"]}}
        """
    }

    /// The build before asked for `TCP_NODELAY` at the socket level, where its number is
    /// `SO_DEBUG`, which needs `CAP_NET_ADMIN`: as root it passed unseen; without the capability
    /// every accepted connection was closed before a byte was read, and every upstream connection
    /// failed, while `/readyz` said ready (an attacker review).
    @Test("a gateway without CAP_NET_ADMIN serves requests and reaches its upstream")
    func servesWithoutNetAdmin() async throws {
        #expect(getuid() == 0, "not root")
        let upstream = try await TestUpstream.start()
        let directory = try TemporaryDirectory.make(prefix: "portcullis-nocap")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let port = try FreePort.allocate(), adminPort = try FreePort.allocate()
        let config = directory + "/gateway.yaml"
        try Self.config(port: port, adminPort: adminPort, upstream: upstream.address).write(toFile: config, atomically: true, encoding: .utf8)
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

    /// The build before read the machine's memory from `/proc/meminfo`, which `ProcSubset=pid`
    /// hides: without a cgroup limit it had no figure and turned the guard off.
    @Test("under the units' /proc (ProcSubset=pid: no /proc/meminfo) the memory guard still knows the machine's memory")
    func memoryGuardWithoutMeminfo() async throws {
        #expect(getuid() == 0, "not root")
        let directory = try TemporaryDirectory.make(prefix: "portcullis-subset")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let port = try FreePort.allocate(), adminPort = try FreePort.allocate()
        let config = directory + "/gateway.yaml"
        try (Self.config(port: port, adminPort: adminPort, upstream: "127.0.0.1:1") + "\noverload: {memory_limit: 50%}\n")
            .write(toFile: config, atomically: true, encoding: .utf8)
        // A mount namespace of its own whose /proc shows process folders only, as systemd's
        // `ProcSubset=pid` mounts it, and an empty /sys/fs/cgroup, so no cgroup limit stands in
        // for the machine's memory.
        let script = "mount -t proc -o subset=pid proc /proc && mount -t tmpfs none /sys/fs/cgroup && test ! -e /proc/meminfo"
            + " && exec \"$0\" gateway --config \"$1\""
        let process = try ManagedProcess(executable: "/usr/bin/unshare", arguments: [
            "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private", "--", "/bin/sh", "-c", script, PortcullisBinary.path, config,
        ])
        defer { process.signal(SIGKILL) }
        try await Readiness.waitForHTTP(port: adminPort, path: "/readyz", timeout: .seconds(20))
        let metrics = try HTTPTestClient(port: adminPort, timeout: 5).request("GET", "/metrics").text
        let limit = metrics.split(separator: "\n").first { $0.hasPrefix("portcullis_memory_limit_bytes ") }
            .flatMap { Double($0.split(separator: " ").last ?? "") }
        // Half of MemTotal, as this process (with the whole /proc) reads it.
        let meminfo = try String(contentsOfFile: "/proc/meminfo", encoding: .utf8)
        let total = try #require(meminfo.split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
            .flatMap { $0.split(separator: " ").dropFirst().first.flatMap { Double($0) } }) * 1024
        #expect(abs((limit ?? 0) - total / 2) < total / 1000, "limit \(limit ?? 0), half of MemTotal \(total / 2)\n\(process.output)")
        #expect(!process.output.contains("will not shed"), "\(process.output)")
    }
}
