import Logging
import NIOCore

/// Opens a ready-to-use connection for a configuration: resolves the endpoint (through Sentinel
/// when configured), connects, authenticates and selects the database.
struct RedisConnector: Sendable {
    let configuration: RedisConfiguration
    let logger: Logger

    /// True when READONLY replies should drop the connection so the next command re-resolves the master.
    var followsMaster: Bool {
        if case .sentinel = configuration.endpoint { true } else { false }
    }

    func connect(on eventLoop: any EventLoop) async throws -> RedisConnection {
        switch configuration.endpoint {
        case .tcp(let host, let port):
            try await open(.tcp(host: host, port: port), requireMaster: false, on: eventLoop)
        case .unixSocket(let path):
            try await open(.unixSocket(path: path), requireMaster: false, on: eventLoop)
        case .sentinel(let masterName, let sentinels):
            try await SentinelResolver(masterName: masterName, sentinels: sentinels, connector: self)
                .connectToMaster(on: eventLoop)
        }
    }

    /// A data-node connection with AUTH and SELECT (and ROLE when `requireMaster`).
    func open(_ target: RedisConnection.Target, requireMaster: Bool, on eventLoop: any EventLoop) async throws -> RedisConnection {
        let handshake = RedisConnection.Handshake(username: configuration.username, password: configuration.password,
                                                  database: configuration.database, requireMaster: requireMaster)
        return try await RedisConnection.open(target, handshake: handshake,
                                              connectTimeout: configuration.connectTimeout,
                                              commandTimeout: configuration.commandTimeout,
                                              closeOnReadOnly: followsMaster, eventLoop: eventLoop, logger: logger)
    }

    /// A bare connection (no AUTH/SELECT), for talking to Sentinels.
    func openBare(_ target: RedisConnection.Target, on eventLoop: any EventLoop) async throws -> RedisConnection {
        try await RedisConnection.open(target, handshake: .init(), connectTimeout: configuration.connectTimeout,
                                       commandTimeout: configuration.commandTimeout, closeOnReadOnly: false,
                                       eventLoop: eventLoop, logger: logger)
    }
}
