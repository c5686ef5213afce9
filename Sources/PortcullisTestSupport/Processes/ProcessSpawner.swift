import Dispatch
import Foundation
import Synchronization

/// Starts child processes with `posix_spawn` from one thread that lives as long as the test process.
///
/// Why a dedicated thread: on Linux the parent-death signal (`PR_SET_PDEATHSIG`, set through
/// `setpriv --pdeathsig KILL`) fires when the *thread* that spawned the child exits. Swift
/// concurrency's pool threads come and go, so spawning from one of them could kill a server in the
/// middle of a test. From this thread, the signal fires only when the whole test process dies —
/// which is exactly what keeps a crashed test run from leaving redis-server processes behind.
final class ProcessSpawner: Sendable {
    static let shared = ProcessSpawner()

    private let jobs = LockedBox<[@Sendable () -> Void]>([])
    private let wakeup = DispatchSemaphore(value: 0)
    private static let setpriv = "/usr/bin/setpriv"

    private init() {
        let jobs = self.jobs, wakeup = self.wakeup
        let thread = Thread {
            while true {
                wakeup.wait()
                for job in jobs.withLock({ queued in defer { queued.removeAll() }; return queued }) { job() }
            }
        }
        thread.name = "portcullis-test-spawner"
        thread.start()
    }

    /// Spawns `executable` with stdout and stderr appended to `logFile` and stdin from /dev/null.
    func spawn(executable: String, arguments: [String], environment: [String: String], logFile: String) throws -> pid_t {
        try spawn(executable: executable, arguments: arguments, environment: environment, stdin: "/dev/null", stdout: logFile, stderr: nil)
    }

    /// Spawns `executable` with its standard streams on files; `stderr` nil shares `stdout`'s file.
    func spawn(executable: String, arguments: [String], environment: [String: String],
               stdin: String, stdout: String, stderr: String?) throws -> pid_t {
        let resolved = try Self.resolve(executable)
        let useSetpriv = access(Self.setpriv, X_OK) == 0
        let argv = useSetpriv
            ? [Self.setpriv, "--pdeathsig", "KILL", "--", resolved] + arguments
            : [resolved] + arguments
        let env = ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { "\($0)=\($1)" }
        return try run { try Self.posixSpawn(path: argv[0], argv: argv, env: env, stdin: stdin, stdout: stdout, stderr: stderr) }
    }

    private func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        let done = DispatchSemaphore(value: 0)
        let result = LockedBox<Result<T, any Error>?>(nil)
        jobs.withLock { $0.append { result.withLock { $0 = Result { try body() } }; done.signal() } }
        wakeup.signal()
        done.wait()
        return try result.withLock { $0! }.get()
    }

    private static func resolve(_ executable: String) throws -> String {
        if executable.contains("/") {
            guard access(executable, X_OK) == 0 else { throw FixtureError("\(executable) is not an executable file") }
            return executable
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for folder in path.split(separator: ":") where access("\(folder)/\(executable)", X_OK) == 0 {
            return "\(folder)/\(executable)"
        }
        throw FixtureError("\(executable) not found in PATH (\(path))")
    }

    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static var addCloseFrom: AddCloseFrom? {
        dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np")
            .map { unsafeBitCast($0, to: AddCloseFrom.self) }
    }

    private static func posixSpawn(path: String, argv: [String], env: [String], stdin: String, stdout: String, stderr: String?) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        if let stderr {
            posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        // Without this the child inherits every descriptor the test process has open without
        // CLOEXEC (e.g. the pipes of a concurrently running `runCommand`), which would keep those
        // pipes open and hang their readers until the server exits.
        // glibc ≥ 2.34 has posix_spawn_file_actions_addclosefrom_np, but Swift's Glibc module does
        // not import it (it needs _GNU_SOURCE), hence the lookup by name.
        if let closeFrom = Self.addCloseFrom {
            _ = closeFrom(&actions, 3)
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The test process may ignore or block signals (NIO ignores SIGPIPE); servers get defaults.
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD, SIGQUIT, SIGUSR1, SIGUSR2] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let cArgv = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup($0) } + [nil]
        defer {
            cArgv.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, path, &actions, &attributes, cArgv, cEnv)
        guard status == 0 else { throw FixtureError("posix_spawn \(argv.joined(separator: " ")): \(errnoDescription(status))") }
        return pid
    }
}

/// A value behind a `Mutex`, shareable between closures (a `Mutex` itself cannot be captured).
final class LockedBox<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R { try mutex.withLock { try body(&$0) } }
}
