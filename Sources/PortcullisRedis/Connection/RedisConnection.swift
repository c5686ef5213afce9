import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// One open channel with the RESP pipeline installed:
/// `RedisReplyDecoder` (hiredis reader) → `RedisCommandHandler` (FIFO of completions), and
/// `RedisCommandEncoder` (hiredis formatter) on the way out.
final class RedisConnection: Sendable {
    enum Target: Sendable {
        case tcp(host: String, port: Int)
        case unixSocket(path: String)

        var label: String {
            switch self {
            case .tcp(let host, let port): formatHostPort(host, port)
            case .unixSocket(let path): path
            }
        }
    }

    /// TLS for one connection: the client's shared context, the name to send and verify (nil
    /// for an IP address, which is checked against the certificate's IP entries), and a DNS name
    /// the certificate must list besides (`RedisServerIdentity`).
    struct TLS: Sendable {
        var context: NIOSSLContext
        var serverName: String?
        var requiredName: String?
        /// A DNS name the certificate must not list (`RedisServerIdentity`).
        var forbiddenName: String?
    }

    /// What to send right after connecting, before anyone else may use the connection.
    struct Handshake: Sendable {
        var username: String?
        var password: String?
        var database: Int = 0
        /// Send `ROLE` and fail unless the server says "master" (Sentinel-resolved connections).
        var requireMaster = false
    }

    let channel: any Channel
    /// "host:port" or the socket path.
    let address: String
    private let handler: NIOLoopBound<RedisCommandHandler>

    var eventLoop: any EventLoop { channel.eventLoop }
    var isActive: Bool { channel.isActive }

    private init(channel: any Channel, address: String, handler: NIOLoopBound<RedisCommandHandler>) {
        self.channel = channel
        self.address = address
        self.handler = handler
    }

    /// Connects, installs the pipeline and runs the handshake. Every error is a `RedisError`
    /// naming `target`.
    static func open(_ target: Target, tls: TLS? = nil, handshake: Handshake, connectTimeout: Duration, commandTimeout: Duration,
                     closeOnReadOnly: Bool, eventLoop: any EventLoop, logger: Logger) async throws -> RedisConnection {
        let address = target.label
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(TimeAmount(connectTimeout))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandlers([
                            NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverName),
                            RedisServerIdentity(requiredName: tls.requiredName, forbiddenName: tls.forbiddenName, timeout: TimeAmount(connectTimeout), address: address,
                                                eventLoop: channel.eventLoop),
                        ])
                    }
                    try channel.pipeline.syncOperations.addHandlers([
                        RedisReplyDecoder(),
                        RedisCommandEncoder(),
                        RedisCommandHandler(address: address, commandTimeout: commandTimeout, closeOnReadOnly: closeOnReadOnly),
                    ])
                }
            }
        let channel: any Channel
        do {
            switch target {
            case .tcp(let host, let port): channel = try await bootstrap.connect(host: host, port: port).get()
            case .unixSocket(let path): channel = try await bootstrap.connect(unixDomainSocketPath: path).get()
            }
        } catch {
            throw RedisError.connecting(error, address: address)
        }
        if tls != nil {
            // Nothing is sent until the server has proved who it is.
            do {
                try await eventLoop.flatSubmit {
                    do {
                        return try channel.pipeline.syncOperations.handler(type: RedisServerIdentity.self).verified
                    } catch {
                        return eventLoop.makeFailedFuture(error)
                    }
                }.get()
            } catch {
                channel.close(promise: nil)
                throw (error as? RedisError) ?? RedisError.tls("\(address): \(error)")
            }
        }
        let connection: RedisConnection
        do {
            connection = try await eventLoop.submit {
                let handler = try channel.pipeline.syncOperations.handler(type: RedisCommandHandler.self)
                return RedisConnection(channel: channel, address: address, handler: NIOLoopBound(handler, eventLoop: eventLoop))
            }.get()
        } catch {
            channel.close(promise: nil)
            throw RedisError.afterConnect(error, address: address)
        }
        do {
            try await connection.perform(handshake, verifyTLS: tls != nil)
        } catch {
            await connection.shutdown(reason: .connectionClosed("\(address): handshake failed"))
            throw error
        }
        logger.debug("connected to Redis", metadata: ["redis.address": "\(address)"])
        return connection
    }

    /// `verifyTLS`: send at least one command, so that a TLS handshake failure shows here and not
    /// at the first command of whoever uses the connection.
    private func perform(_ handshake: Handshake, verifyTLS: Bool) async throws {
        var commands: [[RedisArgument]] = []
        let authenticates = handshake.password != nil
        if let password = handshake.password {
            commands.append(handshake.username.map { ["AUTH", RedisArgument($0), RedisArgument(password)] }
                ?? ["AUTH", RedisArgument(password)])
        }
        if handshake.database != 0 { commands.append(["SELECT", RedisArgument(handshake.database)]) }
        if handshake.requireMaster { commands.append(["ROLE"]) }
        if commands.isEmpty, verifyTLS { commands.append(["PING"]) }
        guard !commands.isEmpty else { return }
        let results = try await pipeline(commands)
        for (index, result) in results.enumerated() {
            guard case .failure(let error) = result else { continue }
            if case .errorReply(let message) = error, (authenticates && index == 0) || error.errorCode == "NOAUTH" || error.errorCode == "NOPERM" {
                let user = handshake.username.map { "user '\($0)'" } ?? "the default user"
                throw RedisError.authentication("\(address): AUTH as \(user) refused: \(message)")
            }
            throw error
        }
        if handshake.requireMaster, case .success(let role) = results.last, role.array?.first?.string != "master" {
            let name = role.array?.first?.string ?? "\(role)"
            throw RedisError.sentinel("\(address) is not a master (ROLE says \(name))")
        }
    }

    // MARK: Commands

    /// On the event loop.
    func dispatchOnLoop(_ arguments: [RedisArgument], completion: RedisCommandHandler.Completion) {
        handler.value.send(arguments, completion: completion)
    }

    /// On the event loop.
    func dispatchOnLoop(batch commands: [[RedisArgument]], promise: EventLoopPromise<[Result<RedisValue, RedisError>]>) {
        handler.value.send(batch: commands, promise: promise)
    }

    /// From any task.
    func send(_ arguments: [RedisArgument]) async throws -> RedisValue {
        do {
            return try await eventLoop.flatSubmit {
                let promise = self.eventLoop.makePromise(of: RedisValue.self)
                self.dispatchOnLoop(arguments, completion: .single(promise))
                return promise.futureResult
            }.get()
        } catch {
            throw RedisError.afterConnect(error, address: address)
        }
    }

    /// From any task: one result per command; connection failures appear as failures too.
    func pipeline(_ commands: [[RedisArgument]]) async throws -> [Result<RedisValue, RedisError>] {
        do {
            return try await eventLoop.flatSubmit {
                let promise = self.eventLoop.makePromise(of: [Result<RedisValue, RedisError>].self)
                self.dispatchOnLoop(batch: commands, promise: promise)
                return promise.futureResult
            }.get()
        } catch {
            throw RedisError.afterConnect(error, address: address)
        }
    }

    /// Closes the channel; commands still waiting fail with `reason`. From any thread.
    @discardableResult
    func close(reason: RedisError) -> EventLoopFuture<Void> {
        let channel = self.channel
        eventLoop.execute {
            // After `becomeSubscriberOnLoop` the command handler is no longer in the pipeline.
            if !self.handler.value.close(reason: reason) { channel.close(promise: nil) }
        }
        return channel.closeFuture
    }

    /// Closes the channel and waits until it is closed.
    func shutdown(reason: RedisError) async {
        try? await close(reason: reason).get()
    }

    // MARK: Pub/sub

    /// Replaces the command handler with a pub/sub handler that subscribes to `channels` and
    /// `patterns` and yields to `continuation`. On the event loop. The first future completes once
    /// every subscription is confirmed; the second with the reason when the connection ends.
    func becomeSubscriberOnLoop(_ setup: RedisPubSubHandler.Setup) throws -> (subscribed: EventLoopFuture<Void>, closed: EventLoopFuture<String>) {
        let pubsub = RedisPubSubHandler(setup: setup, address: address, eventLoop: eventLoop)
        let pipeline = channel.pipeline.syncOperations
        pipeline.removeHandler(handler.value, promise: nil)
        do {
            try pipeline.addHandler(pubsub)
        } catch {
            // The connection may close as it becomes a subscriber: its promises would otherwise
            // never complete (a debug build traps on the leak).
            pubsub.notAdded("\(address): connection closed before subscribing (\(error))")
            throw error
        }
        return (pubsub.subscribed, pubsub.closed)
    }
}
