import NIOCore

/// Replaces `RedisCommandHandler` on a subscriber connection: subscribes, reports confirmations
/// and messages to the event stream in arrival order, and checks the connection with PING.
///
/// Events are yielded right here on the event loop, so `.connected` always precedes the first
/// message of that connection and every message precedes the following `.disconnected`.
final class RedisPubSubHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = RedisValue
    typealias OutboundOut = RedisOutbound

    struct Setup: Sendable {
        var channels: [String]
        var patterns: [String]
        var reconnect: Bool
        var sink: RedisEventSink
        var confirmTimeout: Duration
        var healthCheckInterval: Duration
    }

    private let setup: Setup
    private let address: String
    private let subscribedPromise: EventLoopPromise<Void>
    private let closedPromise: EventLoopPromise<String>
    private var context: ChannelHandlerContext?
    private var unconfirmed: Int
    private var closeReason: String?
    private var confirmTimer: Scheduled<Void>?
    private var healthTimer: Scheduled<Void>?
    private var pingOutstanding = false
    private var isSubscribed = false
    private var isFinished = false

    var subscribed: EventLoopFuture<Void> { subscribedPromise.futureResult }
    var closed: EventLoopFuture<String> { closedPromise.futureResult }

    init(setup: Setup, address: String, eventLoop: any EventLoop) {
        self.setup = setup
        self.address = address
        self.unconfirmed = setup.channels.count + setup.patterns.count
        self.subscribedPromise = eventLoop.makePromise()
        self.closedPromise = eventLoop.makePromise()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        guard context.channel.isActive else { return close(context, "\(address): connection closed before subscribing") }
        if !setup.channels.isEmpty {
            context.write(wrapOutboundOut(.command(["SUBSCRIBE"] + setup.channels.map { RedisArgument($0) })), promise: nil)
        }
        if !setup.patterns.isEmpty {
            context.write(wrapOutboundOut(.command(["PSUBSCRIBE"] + setup.patterns.map { RedisArgument($0) })), promise: nil)
        }
        context.flush()
        if unconfirmed == 0 {
            confirmed(context)
        } else {
            confirmTimer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(setup.confirmTimeout)) {
                self.close(context, "\(self.address): subscriptions not confirmed within \(formatDuration(self.setup.confirmTimeout))")
            }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish("\(address): connection closed")
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish("\(address): server closed the connection")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        close(context, RedisError.afterConnect(error, address: address).message)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = unwrapInboundIn(data)
        if case .error(let message) = value {
            return close(context, "\(address): error reply on the subscriber connection: \(message)")
        }
        guard let items = value.array, let kind = items.first?.string else {
            return close(context, "\(address): unexpected reply on the subscriber connection: \(value)")
        }
        switch kind {
        case "message" where items.count == 3:
            guard let channel = items[1].string, let payload = items[2].bytes else { break }
            setup.sink.yield(.message(channel: channel, payload: payload))
        case "pmessage" where items.count == 4:
            guard let pattern = items[1].string, let channel = items[2].string, let payload = items[3].bytes else { break }
            setup.sink.yield(.patternMessage(pattern: pattern, channel: channel, payload: payload))
        case "subscribe", "psubscribe":
            unconfirmed -= 1
            if unconfirmed == 0 { confirmed(context) }
        case "pong":
            pingOutstanding = false
        default:
            break  // unsubscribe confirmations and the like
        }
    }

    private func confirmed(_ context: ChannelHandlerContext) {
        confirmTimer?.cancel()
        confirmTimer = nil
        isSubscribed = true
        setup.sink.yield(.connected(reconnect: setup.reconnect))
        subscribedPromise.succeed()
        scheduleHealthCheck(context)
    }

    /// Sends PING every `healthCheckInterval` and closes the connection if the answer has not come
    /// by the next check, so a server that stopped answering (but keeps the socket) is noticed.
    private func scheduleHealthCheck(_ context: ChannelHandlerContext) {
        healthTimer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(setup.healthCheckInterval)) {
            guard let context = self.context else { return }
            if self.pingOutstanding {
                return self.close(context, "\(self.address): no reply to PING within \(formatDuration(self.setup.healthCheckInterval))")
            }
            self.pingOutstanding = true
            context.writeAndFlush(self.wrapOutboundOut(.command(["PING"])), promise: nil)
            self.scheduleHealthCheck(context)
        }
    }

    private func close(_ context: ChannelHandlerContext, _ reason: String) {
        if closeReason == nil { closeReason = reason }
        context.close(promise: nil)
    }

    /// The handler could not be added to its connection's pipeline (the connection closed as it
    /// became a subscriber): its futures complete with `reason`, as for a connection that closed.
    func notAdded(_ reason: String) {
        finish(reason)
    }

    private func finish(_ defaultReason: String) {
        guard !isFinished else { return }
        isFinished = true
        confirmTimer?.cancel()
        healthTimer?.cancel()
        confirmTimer = nil
        healthTimer = nil
        let reason = closeReason ?? defaultReason
        closeReason = reason
        if !isSubscribed { subscribedPromise.fail(RedisError.connectionClosed(reason)) }
        closedPromise.succeed(reason)
    }
}
