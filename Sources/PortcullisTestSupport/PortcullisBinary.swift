import Foundation
import Synchronization

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
/// For short commands (CLI invocations); long-running servers use `ManagedProcess`.
public func runCommand(_ executable: String, _ arguments: [String], stdin: String? = nil,
                       environment: [String: String]? = nil) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let outPipe = Pipe(), errPipe = Pipe(), inPipe = Pipe()
    process.standardOutput = outPipe
    process.standardError = errPipe
    process.standardInput = inPipe
    try process.run()
    if let stdin { inPipe.fileHandleForWriting.write(Data(stdin.utf8)) }
    try inPipe.fileHandleForWriting.close()
    // Read both pipes before waiting so a chatty child cannot fill a pipe and deadlock.
    let errData = Mutex<Data?>(nil)
    let errHandle = errPipe.fileHandleForReading
    Thread.detachNewThread { let data = errHandle.readDataToEndOfFile(); errData.withLock { $0 = data } }
    let out = outPipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    var err: Data?
    while err == nil {
        err = errData.withLock { $0 }
        if err == nil { usleep(1000) }
    }
    return CommandResult(status: process.terminationStatus,
                         stdout: String(decoding: out, as: UTF8.self),
                         stderr: String(decoding: err ?? Data(), as: UTF8.self))
}

