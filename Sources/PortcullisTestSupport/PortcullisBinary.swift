import Foundation

/// Where the `portcullis` executable under test lives: `$PORTCULLIS_BIN` when set (the test
/// script sets it), else the debug build next to this package.
public enum PortcullisBinary {
    public static var path: String {
        if let path = ProcessInfo.processInfo.environment["PORTCULLIS_BIN"], !path.isEmpty {
            return path
        }
        return packageRoot + "/.build/debug/portcullis"
    }

    /// The package's root folder, derived from this source file's location.
    public static var packageRoot: String {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent() // PortcullisTestSupport
            .deletingLastPathComponent() // Sources
            .deletingLastPathComponent() // root
            .path
    }
}

/// The result of running a short-lived command to completion.
public struct CommandResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Runs a command to completion with optional stdin and returns its exit status and output.
/// For short commands (CLI invocations, scripts); long-running servers use `ManagedProcess`.
///
/// The streams go through files, not pipes, and the child gets no other descriptor of ours
/// (`ProcessSpawner` closes them): with pipes, a grandchild that outlives the command (a server
/// a script starts in the background) would hold the pipe open and hang the reader.
public func runCommand(_ executable: String, _ arguments: [String], stdin: String? = nil,
                       environment: [String: String]? = nil) throws -> CommandResult {
    let folder = try TemporaryDirectory.make(prefix: "portcullis-cmd")
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let input = folder + "/stdin", output = folder + "/stdout", errors = folder + "/stderr"
    try (stdin ?? "").write(toFile: input, atomically: true, encoding: .utf8)
    let pid = try ProcessSpawner.shared.spawn(executable: executable, arguments: arguments, environment: environment ?? [:],
                                              stdin: input, stdout: output, stderr: errors)
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let exit: Int32 = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    return CommandResult(status: exit,
                         stdout: (try? String(contentsOfFile: output, encoding: .utf8)) ?? "",
                         stderr: (try? String(contentsOfFile: errors, encoding: .utf8)) ?? "")
}
