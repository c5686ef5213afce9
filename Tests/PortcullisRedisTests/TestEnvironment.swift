import Logging
import NIOCore
import NIOPosix
import PortcullisRedis
import PortcullisTestSupport
import Synchronization
import Testing

/// Shared event loops and a quiet logger for the Redis tests.
enum TestEnvironment {
    static let group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton

    static var logger: Logger {
        var logger = Logger(label: "redis-tests")
        logger.logLevel = .error
        return logger
    }
}

/// Runs `body` with a fresh redis-server and a client for it; both are torn down even if `body` throws.
func withRedis(password: String? = nil, configure: (inout RedisConfiguration) -> Void = { _ in },
               _ body: (RedisServerFixture, RedisClient) async throws -> Void) async throws {
    let server = try await RedisServerFixture.start(password: password)
    var configuration = server.configuration()
    configure(&configuration)
    let client = RedisClient(configuration: configuration, eventLoopGroup: TestEnvironment.group, logger: TestEnvironment.logger)
    try await withCleanup(client, { await $0.close(); await server.shutdown() }) { try await body(server, $0) }
}

/// Consumes a subscriber's stream in the background so tests can wait for conditions on what arrived.
final class EventRecorder: Sendable {
    private final class Storage: Sendable {
        let events = Mutex<[RedisPubSubEvent]>([])
    }

    private let storage = Storage()
    private let task: Task<Void, Never>

    init(_ stream: RedisEventStream) {
        let storage = self.storage
        task = Task {
            for await event in stream { storage.events.withLock { $0.append(event) } }
        }
    }

    var all: [RedisPubSubEvent] { storage.events.withLock { $0 } }

    var messages: [RedisPubSubEvent] {
        all.filter {
            switch $0 {
            case .message, .patternMessage: true
            default: false
            }
        }
    }

    /// Waits until `condition` holds for the events so far; fails the test (and throws) after `timeout`.
    @discardableResult
    func wait(for what: String, timeout: Duration = .seconds(10), sourceLocation: SourceLocation = #_sourceLocation,
              until condition: ([RedisPubSubEvent]) -> Bool) async throws -> [RedisPubSubEvent] {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            let snapshot = all
            if condition(snapshot) { return snapshot }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("timed out after \(timeout) waiting for \(what); events: \(all.suffix(10))", sourceLocation: sourceLocation)
        throw RecorderTimeout()
    }

    /// Ends once the stream has finished.
    func finished() async {
        await task.value
    }

    struct RecorderTimeout: Error {}
}

/// Retries `body` until it succeeds or `timeout` passes; returns the errors seen on the way.
func eventually<T>(timeout: Duration, every interval: Duration = .milliseconds(50),
                   _ body: () async throws -> T) async throws -> (value: T, errors: [any Error]) {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    var errors: [any Error] = []
    while true {
        do {
            return (try await body(), errors)
        } catch {
            errors.append(error)
            if clock.now >= deadline { throw error }
            try await Task.sleep(for: interval)
        }
    }
}

extension RedisValue {
    static func bulk(_ text: String) -> RedisValue { .bulkString(Array(text.utf8)) }
}

/// Runs `body`, then shuts the fixture down (also when `body` throws).
func using(_ server: RedisServerFixture, _ body: (RedisServerFixture) async throws -> Void) async throws {
    try await withCleanup(server, { await $0.shutdown() }, body)
}

func using(_ fixture: SentinelFixture, _ body: (SentinelFixture) async throws -> Void) async throws {
    try await withCleanup(fixture, { await $0.shutdown() }, body)
}

func using(_ process: ManagedProcess, _ body: (ManagedProcess) async throws -> Void) async throws {
    try await withCleanup(process, { await $0.kill() }, body)
}
