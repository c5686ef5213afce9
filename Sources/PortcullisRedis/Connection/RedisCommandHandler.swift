import NIOCore

/// Matches replies to commands: a FIFO of completions, so any number of concurrent commands
/// pipeline on one connection. Loop-confined, like every channel handler.
///
/// Timeouts use one timer for the oldest command only (all commands share the same timeout, so
/// the head always expires first); the timer is re-armed lazily instead of per command, which
/// keeps scheduling off the pipelined hot path.
final class RedisCommandHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = RedisValue
    typealias OutboundOut = RedisOutbound

    enum Completion {
        case single(EventLoopPromise<RedisValue>)
        case batch(RedisBatch, index: Int)

        func complete(_ result: Result<RedisValue, RedisError>) {
            switch self {
            case .single(let promise): promise.completeWith(result.mapError { $0 })
            case .batch(let batch, let index): batch.complete(index, result)
            }
        }
    }

    private struct Pending {
        var completion: Completion
        var deadline: NIODeadline
    }

    /// "host:port" or the socket path, for messages.
    let address: String
    private let commandTimeout: TimeAmount
    private let closeOnReadOnly: Bool
    private var context: ChannelHandlerContext?
    private var pending = CircularBuffer<Pending>(initialCapacity: 16)
    private var timer: Scheduled<Void>?
    private var flushScheduled = false
    /// Why the connection is going away; given to every command still waiting.
    private var closeReason: RedisError?

    init(address: String, commandTimeout: Duration, closeOnReadOnly: Bool) {
        self.address = address
        self.commandTimeout = TimeAmount(commandTimeout)
        self.closeOnReadOnly = closeOnReadOnly
    }

    // MARK: Sending (on the event loop)

    func send(_ arguments: [RedisArgument], completion: Completion) {
        guard let context, closeReason == nil, context.channel.isActive else {
            completion.complete(.failure(closeReason ?? .connectionClosed("\(address): connection is closed")))
            return
        }
        guard !arguments.isEmpty else { return completion.complete(.failure(Self.emptyCommand)) }
        pending.append(Pending(completion: completion, deadline: .now() + commandTimeout))
        context.write(wrapOutboundOut(.command(arguments)), promise: nil)
        if timer == nil { armTimer(context) }
        scheduleFlush(context)
    }

    /// Writes all commands as one message and flushes once.
    func send(batch commands: [[RedisArgument]], promise: EventLoopPromise<[Result<RedisValue, RedisError>]>) {
        let batch = RedisBatch(count: commands.count, promise: promise)
        guard let context, closeReason == nil, context.channel.isActive else {
            let error = closeReason ?? .connectionClosed("\(address): connection is closed")
            for index in commands.indices { batch.complete(index, .failure(error)) }
            return
        }
        var sendable = commands
        if commands.contains(where: { $0.isEmpty }) {
            sendable = commands.filter { !$0.isEmpty }
            for (index, command) in commands.enumerated() where command.isEmpty { batch.complete(index, .failure(Self.emptyCommand)) }
        }
        let deadline = NIODeadline.now() + commandTimeout
        // Appending to a local queue avoids an exclusivity check per command on the stored property.
        var queue = CircularBuffer<Pending>()
        swap(&queue, &pending)
        for (index, command) in commands.enumerated() where !command.isEmpty {
            queue.append(Pending(completion: .batch(batch, index: index), deadline: deadline))
        }
        swap(&queue, &pending)
        context.write(wrapOutboundOut(.batch(sendable)), promise: nil)
        if timer == nil { armTimer(context) }
        context.flush()
    }

    private static let emptyCommand = RedisError.protocolError("cannot send an empty command")

    /// Closes the connection; commands still waiting fail with `reason`. Returns false if this
    /// handler is no longer in a pipeline (and so cannot close anything).
    @discardableResult
    func close(reason: RedisError) -> Bool {
        guard let context else { return false }
        if closeReason == nil { closeReason = reason }
        context.close(promise: nil)
        return true
    }

    /// Commands sent in the same event-loop tick go out in one write: the flush runs after the
    /// tasks already queued on the loop (e.g. other `send` calls hopping over from tasks).
    private func scheduleFlush(_ context: ChannelHandlerContext) {
        guard !flushScheduled else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute {
            self.flushScheduled = false
            self.context?.flush()
        }
    }

    // MARK: Replies

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = unwrapInboundIn(data)
        guard let head = pending.popFirst() else {
            closeReason = .protocolError("\(address): reply \(value) arrived without a command waiting for it")
            context.close(promise: nil)
            return
        }
        if case .error(let message) = value {
            head.completion.complete(.failure(.errorReply(message)))
            if closeOnReadOnly, message.hasPrefix("READONLY") {
                // The master we were given has been demoted; the next command re-resolves it.
                close(reason: .connectionClosed("\(address) is no longer the master (READONLY); reconnecting"))
            }
        } else {
            head.completion.complete(.success(value))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if closeReason == nil { closeReason = RedisError.afterConnect(error, address: address) }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(closeReason ?? .connectionClosed("\(address): server closed the connection"))
        context.fireChannelInactive()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        failAll(closeReason ?? .connectionClosed("\(address): connection closed"))
        timer?.cancel()
        timer = nil
        self.context = nil
    }

    private func failAll(_ error: RedisError) {
        if closeReason == nil { closeReason = error }
        while let entry = pending.popFirst() {
            entry.completion.complete(.failure(error))
        }
    }

    // MARK: Timeouts

    private func armTimer(_ context: ChannelHandlerContext) {
        guard let head = pending.first else { return }
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: head.deadline) {
            self.timerFired()
        }
    }

    private func timerFired() {
        timer = nil
        guard let context, let head = pending.first else { return }
        let now = NIODeadline.now()
        guard head.deadline <= now else { return armTimer(context) }
        // Replies to later commands would now be matched to the wrong promises: give up on the connection.
        let timeout = RedisError.timeout("\(address): no reply within \(formatDuration(commandTimeout))")
        while let entry = pending.first, entry.deadline <= now {
            pending.removeFirst()
            entry.completion.complete(.failure(timeout))
        }
        close(reason: .connectionClosed("\(address): connection closed after an earlier command timed out"))
    }
}

/// Collects the replies of one `pipeline` call and completes its promise when the last one is in.
/// Loop-confined (only the command handler touches it).
final class RedisBatch {
    private var results: [Result<RedisValue, RedisError>]
    private var remaining: Int
    private let promise: EventLoopPromise<[Result<RedisValue, RedisError>]>

    init(count: Int, promise: EventLoopPromise<[Result<RedisValue, RedisError>]>) {
        results = Array(repeating: .success(.null), count: count)
        remaining = count
        self.promise = promise
        if count == 0 { promise.succeed([]) }
    }

    func complete(_ index: Int, _ result: Result<RedisValue, RedisError>) {
        results[index] = result
        remaining -= 1
        if remaining == 0 { promise.succeed(results) }
    }
}
