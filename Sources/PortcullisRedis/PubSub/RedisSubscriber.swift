import Logging
import NIOCore
import Synchronization

/// A dedicated pub/sub connection. Reconnects forever until closed (with `RedisBackoff` between
/// attempts, re-resolving the master through Sentinel when configured) and re-subscribes each time.
///
/// Contract: `.connected(reconnect: true)` means messages may have been lost while disconnected;
/// the caller must resync. Events are delivered in order. The stream buffers without bound
/// unless `events` is given a `buffer`: then new events are dropped beyond it, and
/// `takeOverflow()` says so (the caller must resync then too).
public final class RedisSubscriber: Sendable {
    private let connector: RedisConnector
    private let eventLoop: any EventLoop
    private let logger: Logger
    private let backoff: RedisBackoff
    private let healthCheckInterval: Duration
    private let state = Mutex(State())

    private struct State {
        var started = false
        var closed = false
        var task: Task<Void, Never>?
        var connection: RedisConnection?
        var sink: RedisEventSink?
    }

    /// - Parameter healthCheckInterval: how often the idle connection is checked with PING; a
    ///   missing answer by the next check closes it and triggers a reconnect.
    public init(configuration: RedisConfiguration, eventLoopGroup: any EventLoopGroup, logger: Logger,
                backoff: RedisBackoff = .default, healthCheckInterval: Duration = .seconds(5)) {
        self.connector = RedisConnector(configuration: configuration, logger: logger)
        self.eventLoop = eventLoopGroup.next()
        self.logger = logger
        self.backoff = backoff
        self.healthCheckInterval = healthCheckInterval
    }

    deinit {
        let (task, connection) = state.withLock { ($0.task, $0.connection) }
        task?.cancel()
        connection?.close(reason: .clientClosed)
    }

    /// Starts the connection and returns the event stream. Call once: a second call returns a
    /// stream that reports `.disconnected` and finishes. The stream finishes after `close()`;
    /// cancelling its consumer closes the subscriber.
    /// - Parameter buffer: what is held for a consumer that is behind (nil: no bound).
    public func events(channels: [String], patterns: [String], buffer: RedisEventBuffer? = nil) -> RedisEventStream {
        let (base, continuation) = AsyncStream.makeStream(of: RedisPubSubEvent.self)
        let sink = RedisEventSink(continuation, buffer: buffer)
        let stream = RedisEventStream(base: base, sink: sink)
        let first = state.withLock { state in
            guard !state.started, !state.closed else { return false }
            state.started = true
            state.sink = sink
            return true
        }
        guard first else {
            continuation.yield(.disconnected("events(channels:patterns:) was already called, or the subscriber is closed"))
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] termination in
            if case .cancelled = termination, let self { Task { await self.close() } }
        }
        let task = Task { await self.run(channels: channels, patterns: patterns, sink: sink) }
        state.withLock { state in
            if state.closed { task.cancel() } else { state.task = task }
        }
        return stream
    }

    /// Whether the stream dropped an event (it has a `buffer`, and the consumer fell that far
    /// behind) since the last call: the consumer must resync, as after a reconnect.
    public func takeOverflow() -> Bool {
        state.withLock { $0.sink }?.takeOverflow() ?? false
    }

    /// Closes the connection, stops reconnecting and finishes the stream.
    public func close() async {
        let (task, connection, sink) = state.withLock { state in
            state.closed = true
            return (state.task, state.connection, state.sink)
        }
        connection?.close(reason: .clientClosed)
        task?.cancel()
        await task?.value
        sink?.continuation.finish()
    }

    private var isClosed: Bool { state.withLock { $0.closed } }

    private func run(channels: [String], patterns: [String], sink: RedisEventSink) async {
        var attempt = 0
        var hadSubscription = false
        var outageReported = false
        while !isClosed {
            do {
                let connection = try await connector.connect(on: eventLoop)
                let registered = state.withLock { state in
                    if !state.closed { state.connection = connection }
                    return !state.closed
                }
                guard registered else {
                    connection.close(reason: .clientClosed)
                    break
                }
                let setup = RedisPubSubHandler.Setup(channels: channels, patterns: patterns, reconnect: hadSubscription,
                                                     sink: sink,
                                                     confirmTimeout: connector.configuration.commandTimeout,
                                                     healthCheckInterval: healthCheckInterval)
                let (subscribed, closed) = try await eventLoop.submit {
                    try connection.becomeSubscriberOnLoop(setup)
                }.get()
                do {
                    try await subscribed.get()
                } catch {
                    connection.close(reason: .connectionClosed("subscribing failed"))
                    throw error
                }
                hadSubscription = true
                attempt = 0
                outageReported = false
                logger.debug("Redis subscriber connected", metadata: ["redis.address": "\(connection.address)"])
                let reason = (try? await closed.get()) ?? "\(connection.address): connection closed"
                state.withLock { $0.connection = nil }
                if isClosed { break }
                logger.warning("Redis subscriber disconnected; reconnecting", metadata: ["redis.reason": "\(reason)"])
                sink.yield(.disconnected(reason))
                outageReported = true
            } catch {
                state.withLock { $0.connection = nil }
                if isClosed { break }
                let reason = (error as? RedisError)?.message ?? "\(error)"
                if !outageReported {
                    sink.yield(.disconnected(reason))
                    outageReported = true
                }
                // A TLS or AUTH failure will not heal by itself: say so at every backoff step.
                let kind = (error as? RedisError)?.kind
                logger.log(level: kind == "tls" || kind == "auth" ? .warning : .debug, "Redis subscriber could not connect",
                           metadata: ["redis.reason": "\(reason)", "redis.attempt": "\(attempt)"])
            }
            try? await Task.sleep(for: backoff.delay(forAttempt: attempt))
            attempt += 1
        }
        sink.continuation.finish()
    }
}
