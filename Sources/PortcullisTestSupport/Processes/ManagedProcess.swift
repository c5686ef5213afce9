import Foundation
import Synchronization

/// A long-running child process (redis-server, portcullis gateway/control, a test upstream) whose
/// stdout and stderr go to a log file.
///
/// The child is reaped by this object (no zombies) and killed with SIGKILL in `deinit` if it is
/// still running, so a failing test does not leak it. If the whole test process dies, Linux's
/// parent-death signal kills it too (see `ProcessSpawner`).
public final class ManagedProcess: Sendable {
    /// The child's process id.
    public let pid: Int32
    /// Where stdout and stderr are appended.
    public let logFile: String
    /// The command line, for messages.
    public let commandLine: String
    private let ownsLogFile: Bool
    /// The wait status decoded as a shell would (exit code, or 128 + signal), once reaped.
    private let exitStatus = Mutex<Int32?>(nil)

    /// Starts `executable` (a path, or a name looked up in PATH) with `environment` added to ours.
    /// Without `logFile` the output goes to a temporary file that is deleted with this object.
    public init(executable: String, arguments: [String], environment: [String: String] = [:], logFile: String? = nil) throws {
        let name = executable.split(separator: "/").last.map(String.init) ?? executable
        self.ownsLogFile = logFile == nil
        self.logFile = logFile ?? FileManager.default.temporaryDirectory
            .appendingPathComponent("portcullis-\(name)-\(UUID().uuidString.prefix(8)).log").path
        self.commandLine = ([executable] + arguments).joined(separator: " ")
        self.pid = try ProcessSpawner.shared.spawn(executable: executable, arguments: arguments,
                                                   environment: environment, logFile: self.logFile)
    }

    deinit {
        let reaped = exitStatus.withLock { $0 != nil }
        if !reaped {
            sendSignal(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        if ownsLogFile { unlink(logFile) }
    }

    /// True until the child has exited (and been reaped).
    public var isRunning: Bool { reap() == nil }

    /// Sends `signal` if the child is still running (never to a reaped, possibly reused, pid).
    public func signal(_ signal: Int32) {
        exitStatus.withLock { status in
            Self.reap(pid, &status)
            if status == nil { sendSignal(pid, signal) }
        }
    }

    /// SIGTERM, then SIGKILL if the child is still running after `timeout`. Returns the exit
    /// status (exit code, or 128 + signal number when killed by a signal).
    @discardableResult
    public func terminate(timeout: Duration = .seconds(5)) async -> Int32? {
        signal(SIGTERM)
        if let status = await waitForExit(timeout: timeout) { return status }
        await kill()
        return reap()
    }

    /// SIGKILL and reap.
    public func kill() async {
        signal(SIGKILL)
        _ = await waitForExit(timeout: .seconds(30))
    }

    /// The exit status once the child has exited, or nil if it still runs after `timeout`.
    public func waitForExit(timeout: Duration) async -> Int32? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            if let status = reap() { return status }
            if clock.now >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// The log so far (stdout and stderr interleaved).
    public var output: String {
        (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? ""
    }

    @discardableResult
    private func reap() -> Int32? {
        exitStatus.withLock { status in
            Self.reap(pid, &status)
            return status
        }
    }

    private static func reap(_ pid: Int32, _ status: inout Int32?) {
        guard status == nil else { return }
        var raw: Int32 = 0
        let result = waitpid(pid, &raw, WNOHANG)
        if result == pid {
            let signal = raw & 0x7f
            status = signal == 0 ? (raw >> 8) & 0xff : 128 + signal
        } else if result < 0 && errno == ECHILD {
            status = -1  // someone else reaped it; it is gone either way
        }
    }
}

private func sendSignal(_ pid: Int32, _ signal: Int32) {
    _ = kill(pid, signal)
}
