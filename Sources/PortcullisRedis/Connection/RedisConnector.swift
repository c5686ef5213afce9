import Logging
import Metrics
import NIOCore
import NIOSSL
#if canImport(Glibc)
import Glibc
#endif

/// Opens a ready-to-use connection for a configuration: resolves the endpoint (through Sentinel
/// when configured), connects, authenticates and selects the database.
struct RedisConnector: Sendable {
    let configuration: RedisConfiguration
    let logger: Logger
    /// Made once from `configuration.tls`: nil without TLS, the error when its files cannot be
    /// used (then every connection attempt fails with it; configs check it at load).
    private let tls: Result<NIOSSLContext?, RedisError>

    init(configuration: RedisConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        do {
            tls = .success(try configuration.tls?.makeContext())
        } catch let error as RedisError {
            tls = .failure(error)
        } catch {
            tls = .failure(.tls("\(error)"))
        }
    }

    /// TLS for a connection to `target` (nil without TLS). A data node is verified against
    /// `server_name` when set — which its certificate must then list as a DNS name — else the
    /// host connected to. A Sentinel is verified against its host from the URL, and refused if
    /// its certificate names `server_name`: that name is the Redis servers' alone.
    private func tls(for target: RedisConnection.Target, sentinel: Bool = false) throws -> RedisConnection.TLS? {
        guard let tls = try tls.get() else { return nil }
        let pinned = sentinel ? nil : configuration.tls?.serverName
        let forbidden = sentinel ? configuration.tls?.serverName : nil
        guard case .tcp(let host, _) = target else {
            return RedisConnection.TLS(context: tls, serverName: pinned, requiredName: pinned, forbiddenName: forbidden)
        }
        return RedisConnection.TLS(context: tls, serverName: pinned ?? (host.isIPAddress ? nil : host), requiredName: pinned, forbiddenName: forbidden)
    }

    /// True when READONLY replies should drop the connection so the next command re-resolves the master.
    var followsMaster: Bool {
        if case .sentinel = configuration.endpoint { true } else { false }
    }

    /// Failures are counted in `portcullis_redis_connect_failures_total{kind}` (tls, auth,
    /// refused, timeout, sentinel, …) and thrown as `RedisError`.
    func connect(on eventLoop: any EventLoop) async throws -> RedisConnection {
        do {
            return try await connectOnce(on: eventLoop)
        } catch {
            let kind = (error as? RedisError)?.kind ?? "other"
            Counter(label: "portcullis_redis_connect_failures_total", dimensions: [("kind", kind)]).increment()
            throw error
        }
    }

    private func connectOnce(on eventLoop: any EventLoop) async throws -> RedisConnection {
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
        return try await RedisConnection.open(target, tls: try tls(for: target), handshake: handshake,
                                              connectTimeout: configuration.connectTimeout,
                                              commandTimeout: configuration.commandTimeout,
                                              closeOnReadOnly: followsMaster, eventLoop: eventLoop, logger: logger)
    }

    /// A connection to a Sentinel: its own credentials, no SELECT.
    func openSentinel(_ target: RedisConnection.Target, on eventLoop: any EventLoop) async throws -> RedisConnection {
        let handshake = RedisConnection.Handshake(username: configuration.sentinelUsername, password: configuration.sentinelPassword)
        return try await RedisConnection.open(target, tls: try tls(for: target, sentinel: true), handshake: handshake, connectTimeout: configuration.connectTimeout,
                                       commandTimeout: configuration.commandTimeout, closeOnReadOnly: false,
                                       eventLoop: eventLoop, logger: logger)
    }
}

extension String {
    /// An IPv4 or IPv6 literal (TLS then checks the certificate's IP entries; SNI carries no IP).
    var isIPAddress: Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return withCString { inet_pton(AF_INET, $0, &v4) == 1 || inet_pton(AF_INET6, $0, &v6) == 1 }
    }
}
