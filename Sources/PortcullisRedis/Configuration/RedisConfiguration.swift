/// Where and how to connect to Redis.
public struct RedisConfiguration: Sendable {
    /// How the server is found.
    public enum Endpoint: Sendable {
        /// A server at `host` and `port`.
        case tcp(host: String, port: Int)
        /// A server on the Unix domain socket at `path`.
        case unixSocket(path: String)
        /// The master is looked up by name through the Sentinels, tried in order, on every (re)connect.
        case sentinel(masterName: String, sentinels: [SentinelAddress])
    }

    /// One Sentinel.
    public struct SentinelAddress: Sendable, Hashable, CustomStringConvertible {
        /// The Sentinel's host name or IP address.
        public var host: String
        /// The Sentinel's port.
        public var port: Int

        /// A Sentinel at `host` and `port`.
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        /// `host:port`, with an IPv6 host in brackets.
        public var description: String { formatHostPort(host, port) }
    }

    /// How the server is found.
    public var endpoint: Endpoint
    /// ACL user for `AUTH user password`; without it, `AUTH password`.
    public var username: String?
    /// Sent with `AUTH` on every (re)connect to the data node.
    public var password: String?
    /// `AUTH` for Sentinel connections (Sentinel's own `requirepass` or ACL user), when set.
    public var sentinelUsername: String?
    /// Password for `AUTH` on Sentinel connections; nil sends no `AUTH` to the Sentinels.
    public var sentinelPassword: String?
    /// TLS on every connection — data node and Sentinels — when set (`rediss://`,
    /// `rediss-sentinel://`).
    public var tls: RedisTLS?
    /// Selected with `SELECT` on every (re)connect when not 0.
    public var database: Int
    /// Per connection attempt (each Sentinel and the master count separately).
    public var connectTimeout: Duration
    /// Per command. On expiry the command fails with `.timeout` and the connection is closed,
    /// because later replies could no longer be matched to their commands.
    public var commandTimeout: Duration

    /// A configuration for `endpoint` without TLS or Sentinel credentials; both timeouts default to
    /// 2 seconds.
    public init(endpoint: Endpoint, username: String? = nil, password: String? = nil, database: Int = 0,
                connectTimeout: Duration = .seconds(2), commandTimeout: Duration = .seconds(2)) {
        self.endpoint = endpoint
        self.username = username
        self.password = password
        self.database = database
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
    }

    /// Parses a Redis URL:
    /// - `redis://[[user]:password@]host[:port][/db]` (port 6379 by default; IPv6 hosts in brackets)
    /// - `unix:///path/to.sock[?db=N&password=…&username=…]`
    /// - `redis-sentinel://[[user]:password@]host1[:port1],host2[:port2]/masterName[/db]` (port 26379 by default;
    ///   the credentials are for the master, Sentinels are contacted without them)
    ///
    /// - `rediss://…` and `rediss-sentinel://…`: the same over TLS (see `RedisTLS`; files and a
    ///   server name are set on `tls` after parsing)
    ///
    /// User and password may be percent-encoded.
    /// - Throws: `RedisError.invalidURL` saying what is wrong; the password is never part of the message.
    public init(url: String) throws {
        self = try RedisURLParser(url).parse()
    }
}

/// "host:port", with IPv6 literals in brackets.
func formatHostPort(_ host: String, _ port: Int) -> String {
    host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
}

extension RedisConfiguration.Endpoint {
    /// For messages and logs: "127.0.0.1:6379", "/tmp/redis.sock", "sentinel master 'name'".
    var label: String {
        switch self {
        case .tcp(let host, let port): formatHostPort(host, port)
        case .unixSocket(let path): path
        case .sentinel(let masterName, let sentinels):
            "master '\(masterName)' via sentinels \(sentinels.map(\.description).joined(separator: ","))"
        }
    }
}
