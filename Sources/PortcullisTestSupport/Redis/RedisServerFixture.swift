import Foundation
import PortcullisRedis
import Synchronization

/// A real `redis-server` in a temporary folder on a free loopback port, without persistence
/// unless asked. The process is killed in `deinit` (and by `shutdown()`), so a failing test never
/// leaks it; the folder is removed with it.
public final class RedisServerFixture: Sendable {
    /// Always "127.0.0.1".
    public let host = "127.0.0.1"
    public let port: Int
    /// The temporary folder holding the server's data, log and unix socket.
    public let directory: String
    /// The `requirepass` password, if any.
    public let password: String?
    /// The server's unix socket.
    public var unixSocketPath: String { directory + "/redis.sock" }
    /// `redis://[:password@]127.0.0.1:port`
    public var url: String {
        let credentials = password.map { ":\(percentEncoded($0))@" } ?? ""
        return "redis://\(credentials)\(host):\(port)"
    }

    private let executable: String
    private let arguments: [String]
    private let process: Mutex<ManagedProcess?>
    private let logFile: String

    /// Starts a server and returns once it answers PING.
    /// - Parameters:
    ///   - persistence: append-only file and RDB snapshots in `directory` (survive `restart()`).
    ///   - password: sets `requirepass`.
    ///   - extraArguments: appended to the command line, e.g. `["--replicaof", "127.0.0.1", "6379"]`.
    public static func start(persistence: Bool = false, password: String? = nil,
                             extraArguments: [String] = []) async throws -> RedisServerFixture {
        let persistenceArguments = persistence
            ? ["--appendonly", "yes", "--save", "60 1"]
            : ["--appendonly", "no", "--save", ""]
        return try await launch(executable: "redis-server", password: password) { port, directory in
            var arguments = ["--port", "\(port)", "--bind", "127.0.0.1", "--dir", directory,
                             "--unixsocket", directory + "/redis.sock", "--unixsocketperm", "700",
                             "--protected-mode", "no", "--enable-debug-command", "local"]
                + persistenceArguments
            if let password { arguments += ["--requirepass", password] }
            return arguments + extraArguments
        }
    }

    /// Creates a folder, picks a port, starts `executable` with the arguments `makeArguments`
    /// returns for them, and waits for PING. Retries with another port if the port was taken.
    static func launch(executable: String, password: String?,
                       makeArguments: (_ port: Int, _ directory: String) throws -> [String]) async throws -> RedisServerFixture {
        var lastError: any Error = FixtureError("not started")
        for _ in 0..<3 {
            let directory = try TemporaryDirectory.make(prefix: "portcullis-redis")
            let port = try FreePort.allocate()
            let fixture = try RedisServerFixture(executable: executable, port: port, directory: directory,
                                                 password: password, arguments: makeArguments(port, directory))
            do {
                try await fixture.spawnAndWait()
                return fixture
            } catch {
                lastError = error
                let log = fixture.log
                await fixture.shutdown()
                guard log.contains("Address already in use") else { throw error }
            }
        }
        throw lastError
    }

    private init(executable: String, port: Int, directory: String, password: String?, arguments: [String]) throws {
        self.executable = executable
        self.port = port
        self.directory = directory
        self.password = password
        self.arguments = arguments
        self.logFile = directory + "/server.log"
        self.process = Mutex(nil)
    }

    deinit {
        // ManagedProcess's own deinit kills the server; the folder goes with it.
        process.withLock { $0 = nil }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The server's pid while it runs.
    public var pid: Int32? {
        process.withLock { process in process.flatMap { $0.isRunning ? $0.pid : nil } }
    }

    /// The server's log (all runs since `start`).
    public var log: String { (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "" }

    /// A client configuration for this server (TCP, with the password if any).
    public func configuration(database: Int = 0, commandTimeout: Duration = .seconds(2)) -> RedisConfiguration {
        RedisConfiguration(endpoint: .tcp(host: host, port: port), password: password, database: database,
                           commandTimeout: commandTimeout)
    }

    /// SIGTERM and wait for the server to exit (SIGKILL after 10 s).
    public func stop() async {
        await current()?.terminate(timeout: .seconds(10))
    }

    /// SIGKILL and wait for the server to exit.
    public func kill() async {
        await current()?.kill()
    }

    /// SIGSTOP: the server keeps its sockets but stops answering. Pair with `resume()`.
    public func suspend() {
        current()?.signal(SIGSTOP)
    }

    /// SIGCONT after `suspend()`.
    public func resume() {
        current()?.signal(SIGCONT)
    }

    /// Starts the server again on the same port and folder (stopping it first if it still runs);
    /// returns once it answers PING.
    public func restart() async throws {
        await stop()
        try await spawnAndWait()
    }

    /// Kills the server and removes its folder. Safe to call more than once.
    public func shutdown() async {
        await kill()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Runs `redis-cli` against this server and returns its trimmed stdout.
    @discardableResult
    public func cli(_ arguments: String...) throws -> String {
        try cli(arguments)
    }

    /// Runs `redis-cli` against this server and returns its trimmed stdout.
    @discardableResult
    public func cli(_ arguments: [String]) throws -> String {
        var command = ["-h", host, "-p", "\(port)"]
        if let password { command += ["-a", password, "--no-auth-warning"] }
        let result = try runCommand("/usr/bin/redis-cli", command + arguments)
        guard result.status == 0 else {
            throw FixtureError("redis-cli \(arguments.joined(separator: " ")) against \(host):\(port) exited with \(result.status): \(result.stderr)")
        }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func current() -> ManagedProcess? {
        process.withLock { $0 }
    }

    private func spawnAndWait() async throws {
        let child = try ManagedProcess(executable: executable, arguments: arguments, logFile: logFile)
        process.withLock { $0 = child }
        let host = self.host, port = self.port
        try await Readiness.poll(timeout: .seconds(15), what: "\(executable) on \(host):\(port) to answer PING") {
            guard child.isRunning else {
                throw FixtureError("\(executable) on port \(port) exited early; log:\n\(self.log.suffix(2000))")
            }
            let socket = try PlainSocket(host: host, port: port, timeoutMilliseconds: 500)
            try socket.sendAll("PING\r\n")
            let reply = String(decoding: try socket.receive { $0.contains(UInt8(ascii: "\n")) }, as: UTF8.self)
            // -NOAUTH means it is up and wants a password; -LOADING means it is still reading its data.
            return reply.hasPrefix("+PONG") || reply.hasPrefix("-NOAUTH")
        }
    }
}

private func percentEncoded(_ text: String) -> String {
    text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? text
}
