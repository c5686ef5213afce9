import Foundation

/// Linux network namespaces (`ip netns`, iproute2) for fault tests: a partition, or a loopback
/// whose socket buffers are small. Root is needed; CI runs as root on Linux.
public enum NetworkNamespace {
    /// Whether a namespace can be made here.
    public static let available: Bool = {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") || FileManager.default.isExecutableFile(atPath: "/sbin/ip") else {
            return false
        }
        let name = "pc-probe-\(getpid())"
        guard (try? runCommand("/usr/sbin/ip", ["netns", "add", name]))?.status == 0 else { return false }
        _ = try? runCommand("/usr/sbin/ip", ["netns", "del", name])
        return true
    }()

    /// In CI (`CI=true`) a fault test that cannot run is a failure, not a skip.
    public static let required = ProcessInfo.processInfo.environment["CI"] == "true"

    @discardableResult
    public static func ip(_ arguments: String...) throws -> CommandResult {
        try ip(arguments)
    }

    @discardableResult
    public static func ip(_ arguments: [String]) throws -> CommandResult {
        let result = try runCommand("/usr/sbin/ip", arguments)
        guard result.status == 0 else { throw FixtureError("ip \(arguments.joined(separator: " ")): \(result.stderr)") }
        return result
    }

    /// A new namespace with its loopback up and every TCP socket's buffers fixed at `socketBuffer`
    /// bytes, so that what a peer does not read waits in the processes rather than the kernel.
    /// The caller deletes it (`delete`).
    public static func makeSmallBuffered(socketBuffer: Int = 4096) throws -> String {
        let name = "pc-\(getpid())-\(Int.random(in: 1000...9999))"
        try ip("netns", "add", name)
        do {
            try ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
            let sizes = "\(socketBuffer) \(socketBuffer) \(socketBuffer)"
            // /proc/sys directly: a fresh machine may not have procps' sysctl.
            try ip("netns", "exec", name, "sh", "-c",
                   "echo '\(sizes)' > /proc/sys/net/ipv4/tcp_wmem && echo '\(sizes)' > /proc/sys/net/ipv4/tcp_rmem")
        } catch {
            delete(name)
            throw error
        }
        return name
    }

    public static func delete(_ name: String) {
        _ = try? runCommand("/usr/sbin/ip", ["netns", "del", name])
    }
}
