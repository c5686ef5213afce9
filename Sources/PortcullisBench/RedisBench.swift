import ArgumentParser
import CHiredis
import Foundation
import Logging
import NIOCore
import NIOPosix
import PortcullisCluster
import PortcullisRedis
import Synchronization

/// `portcullis-bench redis`: the Redis client's pub/sub publish-to-receive latency and pipelined
/// commands/s, next to `redis-benchmark` and blocking hiredis measured in the same run against the
/// same freshly started redis-server.
struct RedisBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "redis",
        abstract: "Redis client: pub/sub latency and pipelined commands/s vs redis-benchmark and blocking hiredis."
    )

    @Option(help: "Measured runs; medians are reported.")
    var runs = 3

    @Option(help: "Pub/sub messages (and single awaited commands) per run.")
    var messages = 20_000

    @Option(help: "Commands per pipelined batch.")
    var batchSize = 1024

    @Option(help: "Batches per pipelined measurement.")
    var batches = 300

    @Option(help: "Requests per redis-benchmark test.")
    var peerRequests = 2_000_000

    @Flag(help: "Skip the redis-benchmark and hiredis peers.")
    var noPeer = false

    func run() async throws {
        #if DEBUG
        say("warning: debug build; run with -c release for meaningful figures")
        #endif
        let server = try BenchRedisServer.start()
        defer { server.stop() }
        var logger = Logger(label: "redis-bench")
        logger.logLevel = .error
        let group = MultiThreadedEventLoopGroup.singleton
        let configuration = RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: server.port))
        let ping: [RedisArgument] = ["PING"]
        let set: [RedisArgument] = ["SET", "key:__rand_int__", "xxx"]  // what redis-benchmark sends

        say("Redis client benchmark: redis-server \(server.version) on 127.0.0.1:\(server.port), \(ProcessInfo.processInfo.activeProcessorCount) CPUs, load \(Self.loadAverage())")
        say("runs: \(runs), pub/sub messages: \(messages), pipelined: \(batches) batches of \(batchSize)")
        var rows: [String: [Double]] = [:]
        for run in 1...runs {
            let client = RedisClient(configuration: configuration, eventLoopGroup: group, logger: logger)
            let pubsub = try await Self.pubsubLatency(configuration: configuration, group: group, logger: logger, messages: messages)
            rows["pubsub p50 µs", default: []].append(pubsub.p50)
            rows["pubsub p99 µs", default: []].append(pubsub.p99)
            let single = try await Self.awaitedLatency(client: client, count: messages)
            rows["awaited PING p50 µs", default: []].append(single.p50)
            rows["awaited PING p99 µs", default: []].append(single.p99)
            for inFlight in [1, 4] {
                let pingRate = try await Self.pipelined(client: client, command: ping, batchSize: batchSize, batches: batches, inFlight: inFlight)
                let setRate = try await Self.pipelined(client: client, command: set, batchSize: batchSize, batches: batches, inFlight: inFlight)
                rows["client PING/s, \(inFlight) batch in flight", default: []].append(pingRate)
                rows["client SET/s, \(inFlight) batch in flight", default: []].append(setRate)
            }
            await client.close()
            if !noPeer {
                for clients in [1, 50] {
                    let peer = try Self.redisBenchmark(port: server.port, requests: peerRequests, pipeline: batchSize, clients: clients)
                    rows["redis-benchmark -c \(clients) PING_MBULK/s", default: []].append(peer["PING_MBULK"] ?? .nan)
                    rows["redis-benchmark -c \(clients) SET/s", default: []].append(peer["SET"] ?? .nan)
                }
                let port = server.port, batchSize = batchSize, batches = batches, messages = messages
                let hiredis = try await Self.onThread {
                    try BlockingHiredis.measure(port: port, batchSize: batchSize, batches: batches, messages: messages)
                }
                rows["hiredis blocking PING/s", default: []].append(hiredis.pingRate)
                rows["hiredis blocking SET/s", default: []].append(hiredis.setRate)
                rows["hiredis blocking PING p50 µs", default: []].append(hiredis.roundTrip.p50)
                rows["hiredis blocking PING p99 µs", default: []].append(hiredis.roundTrip.p99)
                rows["hiredis blocking pubsub p50 µs", default: []].append(hiredis.pubsub.p50)
                rows["hiredis blocking pubsub p99 µs", default: []].append(hiredis.pubsub.p99)
            }
            say("run \(run) done (load \(Self.loadAverage()))")
        }

        say("\nmetric                                      median      runs")
        for name in rows.keys.sorted() {
            let values = rows[name]!
            let formatted = values.map { $0 >= 1000 ? String(format: "%.0f", $0) : String(format: "%.1f", $0) }
            say(name.padding(toLength: 40, withPad: " ", startingAt: 0)
                + String(format: " %12.1f", Self.median(values)) + "   " + formatted.joined(separator: " / "))
        }
        if !noPeer {
            say("\nratios of medians (client / peer):")
            for (ours, peer) in [("client PING/s, 1 batch in flight", "redis-benchmark -c 1 PING_MBULK/s"),
                                 ("client SET/s, 1 batch in flight", "redis-benchmark -c 1 SET/s"),
                                 ("client PING/s, 4 batch in flight", "redis-benchmark -c 50 PING_MBULK/s"),
                                 ("client SET/s, 4 batch in flight", "redis-benchmark -c 50 SET/s"),
                                 ("client PING/s, 1 batch in flight", "hiredis blocking PING/s"),
                                 ("client SET/s, 1 batch in flight", "hiredis blocking SET/s"),
                                 ("pubsub p99 µs", "hiredis blocking pubsub p99 µs")] {
                let ratio = Self.median(rows[ours]!) / Self.median(rows[peer]!)
                say("  \(ours) / \(peer): \(String(format: "%.2f", ratio))")
            }
        }
    }

    // MARK: Client measurements

    /// A subscriber and a separate publishing client; the publisher sends one message at a time
    /// (awaiting each PUBLISH reply), stamped with the monotonic clock; the consumer of the event
    /// stream records the age of each message when it gets it.
    static func pubsubLatency(configuration: RedisConfiguration, group: any EventLoopGroup, logger: Logger,
                              messages: Int) async throws -> (p50: Double, p99: Double) {
        let subscriber = RedisSubscriber(configuration: configuration, eventLoopGroup: group, logger: logger)
        let publisher = RedisClient(configuration: configuration, eventLoopGroup: group, logger: logger)
        let events = subscriber.events(channels: ["bench"], patterns: [])
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
        let consumer = Task { () -> [Double] in
            var latencies: [Double] = []
            latencies.reserveCapacity(messages)
            for await event in events {
                switch event {
                case .connected:
                    readyContinuation.yield()
                case .message(_, let payload):
                    let received = monotonicNanos()
                    let sent = payload.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                    latencies.append(Double(received - sent) / 1000)
                    if latencies.count == messages { return latencies }
                default:
                    break
                }
            }
            return latencies
        }
        for await _ in ready { break }
        for _ in 0..<200 { _ = try await publisher.send("PING") }  // connect and warm up
        for _ in 0..<messages {
            let stamp = withUnsafeBytes(of: monotonicNanos()) { Array($0) }
            _ = try await publisher.send("PUBLISH", "bench", RedisArgument(bytes: stamp))
        }
        let latencies = await consumer.value
        await subscriber.close()
        await publisher.close()
        guard latencies.count == messages else { throw ValidationError("received \(latencies.count) of \(messages) messages") }
        return percentiles(latencies)
    }

    /// One command at a time from a task, awaiting each reply.
    static func awaitedLatency(client: RedisClient, count: Int) async throws -> (p50: Double, p99: Double) {
        for _ in 0..<200 { _ = try await client.send("PING") }
        var latencies: [Double] = []
        latencies.reserveCapacity(count)
        for _ in 0..<count {
            let start = monotonicNanos()
            _ = try await client.send("PING")
            latencies.append(Double(monotonicNanos() - start) / 1000)
        }
        return percentiles(latencies)
    }

    /// Commands per second through `pipeline` with `inFlight` batches outstanding on the one connection.
    static func pipelined(client: RedisClient, command: [RedisArgument], batchSize: Int, batches: Int, inFlight: Int) async throws -> Double {
        let batch = Array(repeating: command, count: batchSize)
        for _ in 0..<10 { _ = try await client.pipeline(batch) }
        let perWorker = batches / inFlight
        let start = monotonicNanos()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<inFlight {
                group.addTask {
                    for _ in 0..<perWorker {
                        let results = try await client.pipeline(batch)
                        guard results.count == batchSize, case .success = results[batchSize - 1] else {
                            throw ValidationError("pipeline failed: \(results.last.map { "\($0)" } ?? "no results")")
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let seconds = Double(monotonicNanos() - start) / 1e9
        return Double(perWorker * inFlight * batchSize) / seconds
    }

    // MARK: Peers

    /// Runs `redis-benchmark -P <pipeline> -t ping,set -q` and returns requests/s per test.
    static func redisBenchmark(port: Int, requests: Int, pipeline: Int, clients: Int) throws -> [String: Double] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-benchmark")
        process.arguments = ["-h", "127.0.0.1", "-p", "\(port)", "-P", "\(pipeline)", "-t", "ping,set", "-q",
                             "-n", "\(requests)", "-c", "\(clients)"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        var results: [String: Double] = [:]
        // -q prints progress lines ending in \r and one final line per test:
        // "PING_MBULK: 1923076.88 requests per second, p50=0.439 msec"
        for line in String(decoding: data, as: UTF8.self).split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let parts = line.split(separator: " ")
            guard parts.count >= 4, parts[0].hasSuffix(":"), parts[2] == "requests", let rate = Double(parts[1]) else { continue }
            results[String(parts[0].dropLast())] = rate
        }
        return results
    }

    // MARK: Helpers

    static func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
        }
    }

    static func percentiles(_ values: [Double]) -> (p50: Double, p99: Double) {
        let sorted = values.sorted()
        return (sorted[sorted.count / 2], sorted[min(sorted.count - 1, sorted.count * 99 / 100)])
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? .nan : sorted[sorted.count / 2]
    }

    static func loadAverage() -> String {
        ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?").split(separator: " ").prefix(3).joined(separator: " ")
    }
}

/// Writes a line to stdout unbuffered, so progress shows while the benchmark runs, also when piped.
private func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// The benchmark's own redis-server: a free loopback port, no persistence, stopped at the end.
/// (PortcullisBench does not depend on the test fixtures, so this is a small copy of that idea.)
///
/// Spawned with `posix_spawn` from a dedicated thread rather than with Foundation's `Process`:
/// a child spawned from a Swift concurrency thread inherits that thread's blocked signal mask and
/// then ignores SIGTERM. The thread also owns the child's lifetime: `setpriv --pdeathsig KILL`
/// kills the server if the benchmark dies, and the thread stops and reaps it on `stop()`.
private final class BenchRedisServer: Sendable {
    let port: Int
    let version: String
    private let stopRequested: DispatchSemaphore
    private let stopped: DispatchSemaphore

    private init(port: Int, version: String, stopRequested: DispatchSemaphore, stopped: DispatchSemaphore) {
        self.port = port
        self.version = version
        self.stopRequested = stopRequested
        self.stopped = stopped
    }

    static func start() throws -> BenchRedisServer {
        let port = try freePort()
        let arguments = ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--", "/usr/bin/redis-server", "--port", "\(port)",
                         "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no"]
        let stopRequested = DispatchSemaphore(value: 0), stopped = DispatchSemaphore(value: 0), spawned = DispatchSemaphore(value: 0)
        let spawnError = SpawnErrorBox()
        Thread.detachNewThread {
            let pid: pid_t
            do {
                pid = try spawn(arguments)
            } catch {
                spawnError.message.withLock { $0 = "\(error)" }
                spawned.signal()
                stopped.signal()
                return
            }
            spawned.signal()
            stopRequested.wait()
            kill(pid, SIGTERM)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            stopped.signal()
        }
        spawned.wait()
        if let message = spawnError.message.withLock({ $0 }) { throw ValidationError(message) }
        let server = BenchRedisServer(port: port, version: "?", stopRequested: stopRequested, stopped: stopped)
        for _ in 0..<500 {
            if let context = redisConnect("127.0.0.1", Int32(port)) {
                defer { redisFree(context) }
                if context.pointee.err == 0, let info = blockingCommand(context, ["INFO", "server"])?.string {
                    let version = info.split(separator: "\r\n").first { $0.hasPrefix("redis_version:") }?.dropFirst(14)
                    return BenchRedisServer(port: port, version: version.map(String.init) ?? "?", stopRequested: stopRequested, stopped: stopped)
                }
            }
            usleep(10_000)
        }
        server.stop()
        throw ValidationError("redis-server did not start on port \(port)")
    }

    func stop() {
        stopRequested.signal()
        stopped.wait()
    }

    private final class SpawnErrorBox: Sendable {
        let message = Mutex<String?>(nil)
    }

    private static func spawn(_ arguments: [String]) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGPIPE, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, environ)
        guard status == 0 else { throw ValidationError("posix_spawn \(arguments[0]): \(String(cString: strerror(status)))") }
        return pid
    }

    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard ok else { throw ValidationError("cannot find a free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// The peer for "what does plain C get": hiredis' blocking API on dedicated threads, no event
/// loop, no Swift concurrency. Blocking calls are fine here: these are the benchmark's own threads.
private enum BlockingHiredis {
    struct Results: Sendable {
        var pingRate: Double
        var setRate: Double
        var roundTrip: (p50: Double, p99: Double)
        var pubsub: (p50: Double, p99: Double)
    }

    static func measure(port: Int, batchSize: Int, batches: Int, messages: Int) throws -> Results {
        let context = try connect(port)
        defer { redisFree(context) }
        let pingRate = pipelined(context, ["PING"], batchSize: batchSize, batches: batches)
        let setRate = pipelined(context, ["SET", "key:__rand_int__", "xxx"], batchSize: batchSize, batches: batches)
        var latencies: [Double] = []
        latencies.reserveCapacity(messages)
        for _ in 0..<messages {
            let start = monotonicNanos()
            _ = blockingCommand(context, ["PING"])
            latencies.append(Double(monotonicNanos() - start) / 1000)
        }
        return Results(pingRate: pingRate, setRate: setRate, roundTrip: RedisBench.percentiles(latencies),
                       pubsub: try pubsubLatency(port: port, messages: messages))
    }

    static func connect(_ port: Int) throws -> UnsafeMutablePointer<redisContext> {
        guard let context = redisConnect("127.0.0.1", Int32(port)), context.pointee.err == 0 else {
            throw ValidationError("hiredis could not connect to 127.0.0.1:\(port)")
        }
        return context
    }

    static func pipelined(_ context: UnsafeMutablePointer<redisContext>, _ command: [String], batchSize: Int, batches: Int) -> Double {
        withArgv(command) { argc, argv, lengths in
            let start = monotonicNanos()
            for _ in 0..<batches {
                for _ in 0..<batchSize { redisAppendCommandArgv(context, argc, argv, lengths) }
                for _ in 0..<batchSize {
                    var reply: UnsafeMutableRawPointer?
                    redisGetReply(context, &reply)
                    freeReplyObject(reply)
                }
            }
            return Double(batches * batchSize) / (Double(monotonicNanos() - start) / 1e9)
        }
    }

    /// A subscriber thread blocked in redisGetReply and a publisher (this thread) sending one
    /// stamped PUBLISH at a time, as in the client measurement.
    static func pubsubLatency(port: Int, messages: Int) throws -> (p50: Double, p99: Double) {
        let subscriber = try connect(port)
        _ = blockingCommand(subscriber, ["SUBSCRIBE", "bench-hiredis"])
        let latencies = LatencyBox()
        let done = DispatchSemaphore(value: 0)
        // The context is handed to the reader thread as an address because raw pointers are not
        // Sendable. Safe: only that thread touches it until it signals `done`; only then is it freed here.
        let subscriberAddress = UInt(bitPattern: subscriber)
        Thread.detachNewThread {
            let subscriber = UnsafeMutablePointer<redisContext>(bitPattern: subscriberAddress)!
            var collected: [Double] = []
            collected.reserveCapacity(messages)
            while collected.count < messages {
                var raw: UnsafeMutableRawPointer?
                guard redisGetReply(subscriber, &raw) == REDIS_OK, let raw else { break }
                let reply = raw.assumingMemoryBound(to: redisReply.self).pointee
                if reply.type == REDIS_REPLY_ARRAY, reply.elements == 3, let payload = reply.element[2], payload.pointee.len == 8 {
                    let received = monotonicNanos()
                    let sent = UnsafeRawPointer(payload.pointee.str).loadUnaligned(as: UInt64.self)
                    collected.append(Double(received - sent) / 1000)
                }
                freeReplyObject(raw)
            }
            latencies.values.withLock { $0 = collected }
            done.signal()
        }
        let publisher = try connect(port)
        defer { redisFree(publisher) }
        for _ in 0..<messages {
            var stamp = monotonicNanos()
            let payload = withUnsafeBytes(of: &stamp) { Array($0) }
            blockingCommand(publisher, [Array("PUBLISH".utf8), Array("bench-hiredis".utf8), payload])
        }
        done.wait()
        redisFree(subscriber)
        let collected = latencies.values.withLock { $0 }
        guard collected.count == messages else { throw ValidationError("hiredis subscriber got \(collected.count) of \(messages)") }
        return RedisBench.percentiles(collected)
    }

    final class LatencyBox: Sendable {
        let values = Mutex<[Double]>([])
    }

    static func withArgv<T>(_ arguments: [[UInt8]], _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> T) -> T {
        let storage = arguments.map { bytes -> UnsafeMutablePointer<CChar> in
            let pointer = UnsafeMutablePointer<CChar>.allocate(capacity: max(bytes.count, 1))
            for (index, byte) in bytes.enumerated() { pointer[index] = CChar(bitPattern: byte) }
            return pointer
        }
        defer { storage.forEach { $0.deallocate() } }
        var argv = storage.map { UnsafePointer<CChar>($0) as UnsafePointer<CChar>? }
        let lengths = arguments.map(\.count)
        return argv.withUnsafeMutableBufferPointer { argvBuffer in
            lengths.withUnsafeBufferPointer { body(Int32(arguments.count), argvBuffer.baseAddress!, $0.baseAddress!) }
        }
    }

    static func withArgv<T>(_ arguments: [String], _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> T) -> T {
        withArgv(arguments.map { Array($0.utf8) }, body)
    }
}

/// A blocking command; the reply is freed and returned as a `RedisValue` (strings, integers; else `.null`).
@discardableResult
private func blockingCommand(_ context: UnsafeMutablePointer<redisContext>, _ arguments: [[UInt8]]) -> RedisValue? {
    BlockingHiredis.withArgv(arguments) { argc, argv, lengths in
        guard let raw = redisCommandArgv(context, argc, argv, lengths) else { return nil }
        defer { freeReplyObject(raw) }
        let reply = raw.assumingMemoryBound(to: redisReply.self).pointee
        switch reply.type {
        case REDIS_REPLY_STRING, REDIS_REPLY_STATUS:
            return .bulkString(Array(UnsafeRawBufferPointer(start: reply.str, count: reply.len)))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(reply.integer))
        default:
            return .null
        }
    }
}

@discardableResult
private func blockingCommand(_ context: UnsafeMutablePointer<redisContext>, _ arguments: [String]) -> RedisValue? {
    blockingCommand(context, arguments.map { Array($0.utf8) })
}
