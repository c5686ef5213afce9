import Foundation

/// A process's memory figures from `/proc/PID/status`, for tests that bound what an attack costs.
public enum ProcessStatus {
    /// `field` (`VmHWM:` peak RSS, `VmRSS:` current) of process `pid`, in bytes; -1 when it cannot be read.
    public static func bytes(pid: Int32, _ field: String) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return -1 }
        for line in status.split(separator: "\n") where line.hasPrefix(field) {
            return (Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? -1) * 1024
        }
        return -1
    }
}
