import Logging
import NIOCore
import Synchronization

/// One pipelined command connection to Redis.
///
/// Connects lazily on first use. Concurrent commands share the connection and pipeline
/// automatically; replies come back in order. After a connection closes the next command
/// reconnects (re-resolving the master through Sentinel when configured); AUTH and SELECT are sent
/// on every (re)connect. Commands issued while connecting wait for the connection. Every command
/// that finds no connection tries to connect (so a Redis that is back serves the next command),
/// but failed attempts are logged at warning level once per step of `RedisBackoff` (50 ms
/// doubling to 2 s): a down or misconfigured Redis does not flood the log at the command rate.
///
/// Call `close()` when done; dropping the last reference also closes the connection.
public final class RedisClient: Sendable {
    /// The one event loop this client's connection and state live on.
    public let eventLoop: any EventLoop
    private let connector: RedisConnector
    private let logger: Logger
    private let state: NIOLoopBoundBox<State>
    /// Set by `close()`: nothing is left for `deinit` to do (and the loop may be gone by then).
    private let closedByUser = Atomic<Bool>(false)

    private enum Request {
        case single([RedisArgument], EventLoopPromise<RedisValue>)
        case batch([[RedisArgument]], EventLoopPromise<[Result<RedisValue, RedisError>]>)

        func fail(_ error: RedisError) {
            switch self {
            case .single(_, let promise): promise.fail(error)
            case .batch(let commands, let promise): promise.succeed(commands.map { _ in .failure(error) })
            }
        }
    }

    private enum State {
        case idle
        case connecting([Request])
        case connected(RedisConnection)
        case closed
    }

    private let backoff: RedisBackoff
    /// Failed connection attempts in a row (on the event loop).
    private let failedAttempts: NIOLoopBoundBox<Int>
    /// Until when a failed attempt is logged at debug level only (the current backoff step).
    private let quietUntil: NIOLoopBoundBox<NIODeadline>

    /// A client on one event loop of `eventLoopGroup`; nothing connects until the first command.
    /// `backoff` paces how often failed connection attempts are logged at warning level.
    public init(configuration: RedisConfiguration, eventLoopGroup: any EventLoopGroup, logger: Logger, backoff: RedisBackoff = .default) {
        let eventLoop = eventLoopGroup.next()
        self.eventLoop = eventLoop
        self.backoff = backoff
        self.failedAttempts = .makeBoxSendingValue(0, eventLoop: eventLoop)
        self.quietUntil = .makeBoxSendingValue(.uptimeNanoseconds(0), eventLoop: eventLoop)
        self.connector = RedisConnector(configuration: configuration, logger: logger)
        self.logger = logger
        self.state = .makeBoxSendingValue(.idle, eventLoop: eventLoop)
    }

    deinit {
        guard !closedByUser.load(ordering: .relaxed) else { return }
        let state = self.state
        state.eventLoop.execute {
            if case .connected(let connection) = state.value {
                connection.close(reason: .clientClosed)
            }
        }
    }

    /// Sends one command from any task and returns its reply.
    /// - Throws: `RedisError`; an error reply is `.errorReply` (see `errorCode`).
    public func send(_ arguments: [RedisArgument]) async throws -> RedisValue {
        do {
            return try await eventLoop.flatSubmit { self.sendOnLoop(arguments) }.get()
        } catch {
            throw RedisError.afterConnect(error, address: connector.configuration.endpoint.label)
        }
    }

    /// Sends one command from any task, e.g. `send("SET", "key", "value")`.
    public func send(_ command: RedisArgument, _ arguments: RedisArgument...) async throws -> RedisValue {
        try await send([command] + arguments)
    }

    /// For code already running on `eventLoop` (e.g. inside a NIO handler): no thread hop.
    /// The future fails with a `RedisError`.
    /// - Precondition: called on `eventLoop`.
    public func sendOnLoop(_ arguments: [RedisArgument]) -> EventLoopFuture<RedisValue> {
        eventLoop.preconditionInEventLoop()
        let promise = eventLoop.makePromise(of: RedisValue.self)
        submitOnLoop(.single(arguments, promise))
        return promise.futureResult
    }

    /// Sends all commands back to back in one write; one result per command, in order. Error
    /// replies are `.failure(.errorReply)` in their slot.
    /// - Throws: the connection error if the connection failed before every reply arrived (some
    ///   of the commands may have been executed).
    public func pipeline(_ commands: [[RedisArgument]]) async throws -> [Result<RedisValue, RedisError>] {
        guard !commands.isEmpty else { return [] }
        let results: [Result<RedisValue, RedisError>]
        do {
            results = try await eventLoop.flatSubmit {
                let promise = self.eventLoop.makePromise(of: [Result<RedisValue, RedisError>].self)
                self.submitOnLoop(.batch(commands, promise))
                return promise.futureResult
            }.get()
        } catch {
            throw RedisError.afterConnect(error, address: connector.configuration.endpoint.label)
        }
        for result in results {
            if case .failure(let error) = result, error.errorCode == nil { throw error }
        }
        return results
    }

    /// `EVALSHA` (`EVALSHA_RO` when `readOnly`: Redis then takes the keys as read, which a
    /// read-only ACL right allows, and refuses a write in the script); on NOSCRIPT loads the
    /// script with `SCRIPT LOAD` and retries once.
    public func evalScript(_ script: RedisScript, keys: [RedisArgument], arguments: [RedisArgument], readOnly: Bool = false) async throws -> RedisValue {
        let command: [RedisArgument] = [readOnly ? "EVALSHA_RO" : "EVALSHA", RedisArgument(script.sha1), RedisArgument(keys.count)] + keys + arguments
        do {
            return try await send(command)
        } catch let error as RedisError where readOnly && error.errorCode == "ERR" && "\(error)".contains("unknown command") {
            // Redis 6 has no EVALSHA_RO (nor the read-only ACL selectors that need it).
            return try await evalScript(script, keys: keys, arguments: arguments, readOnly: false)
        } catch let error as RedisError where error.errorCode == "NOSCRIPT" {
            let loaded = try await send("SCRIPT", "LOAD", RedisArgument(script.source))
            guard loaded.string == script.sha1 else {
                throw RedisError.protocolError("SCRIPT LOAD returned \(loaded), expected SHA-1 \(script.sha1)")
            }
            return try await send(command)
        }
    }

    /// Closes the connection; waiting and later commands fail with `.clientClosed`.
    public func close() async {
        closedByUser.store(true, ordering: .relaxed)
        let closed: EventLoopFuture<Void>? = try? await eventLoop.submit {
            let previous = self.state.value
            self.state.value = .closed
            switch previous {
            case .connected(let connection):
                return connection.close(reason: .clientClosed)
            case .connecting(let requests):
                requests.forEach { $0.fail(.clientClosed) }
                return nil
            case .idle, .closed:
                return nil
            }
        }.get()
        try? await closed?.get()
    }

    // MARK: State machine (on the event loop)

    private func submitOnLoop(_ request: Request) {
        switch state.value {
        case .connected(let connection) where connection.isActive:
            dispatch(request, on: connection)
        case .connected, .idle:
            state.value = .connecting([request])
            startConnecting()
        case .connecting(var requests):
            state.value = .idle  // drops the enum's reference so the append does not copy the array
            requests.append(request)
            state.value = .connecting(requests)
        case .closed:
            request.fail(.clientClosed)
        }
    }

    private func dispatch(_ request: Request, on connection: RedisConnection) {
        switch request {
        case .single(let arguments, let promise): connection.dispatchOnLoop(arguments, completion: .single(promise))
        case .batch(let commands, let promise): connection.dispatchOnLoop(batch: commands, promise: promise)
        }
    }

    private func startConnecting() {
        let connector = self.connector
        let eventLoop = self.eventLoop
        eventLoop.makeFutureWithTask {
            try await connector.connect(on: eventLoop)
        }.whenComplete { [weak self] result in
            guard let self else {
                if case .success(let connection) = result { connection.close(reason: .clientClosed) }
                return
            }
            self.connectAttemptFinished(result)
        }
    }

    private func connectAttemptFinished(_ result: Result<RedisConnection, any Error>) {
        guard case .connecting(let requests) = state.value else {
            // Closed while connecting.
            if case .success(let connection) = result { connection.close(reason: .clientClosed) }
            return
        }
        switch result {
        case .success(let connection):
            failedAttempts.value = 0
            quietUntil.value = .uptimeNanoseconds(0)
            state.value = .connected(connection)
            connection.channel.closeFuture.whenComplete { [weak self] _ in
                self?.connectionClosed(connection)
            }
            requests.forEach { dispatch($0, on: connection) }
        case .failure(let error):
            state.value = .idle
            let redisError = RedisError.connecting(error, address: connector.configuration.endpoint.label)
            if NIODeadline.now() >= quietUntil.value {
                let delay = backoff.delay(forAttempt: failedAttempts.value)
                let nanos = delay.components.seconds * 1_000_000_000 + delay.components.attoseconds / 1_000_000_000
                failedAttempts.value += 1
                quietUntil.value = .now() + .nanoseconds(nanos)
                logger.warning("Redis connection failed", metadata: ["redis.error": "\(redisError)", "redis.quiet_for_ms": "\(nanos / 1_000_000)"])
            } else {
                logger.debug("Redis connection failed", metadata: ["redis.error": "\(redisError)"])
            }
            requests.forEach { $0.fail(redisError) }
        }
    }

    private func connectionClosed(_ connection: RedisConnection) {
        guard case .connected(let current) = state.value, current === connection else { return }
        state.value = .idle
        logger.info("Redis connection closed; the next command reconnects", metadata: ["redis.address": "\(connection.address)"])
    }
}
