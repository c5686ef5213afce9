/// Parses Redis URLs. Hand-written rather than built on `URLComponents` because Sentinel URLs list
/// several hosts in the authority, which no URL type accepts, and because every error must say
/// precisely what is wrong without echoing the password.
struct RedisURLParser {
    private let url: String

    init(_ url: String) {
        self.url = url
    }

    func parse() throws -> RedisConfiguration {
        guard let separator = url.firstRange(of: "://") else {
            throw invalid("'\(redacted)' has no scheme; expected redis://, rediss://, unix://, redis-sentinel:// or rediss-sentinel://")
        }
        let scheme = url[..<separator.lowerBound].lowercased()
        let rest = url[separator.upperBound...]
        switch scheme {
        case "redis": return try parseRedis(rest)
        case "rediss":
            var configuration = try parseRedis(rest)
            configuration.tls = RedisTLS()
            return configuration
        case "unix": return try parseUnix(rest)
        case "redis-sentinel": return try parseSentinel(rest)
        case "rediss-sentinel":
            var configuration = try parseSentinel(rest)
            configuration.tls = RedisTLS()
            return configuration
        default:
            throw invalid("unknown scheme '\(scheme)://'; expected redis://, rediss://, unix://, redis-sentinel:// or rediss-sentinel://")
        }
    }

    // MARK: - Schemes

    private func parseRedis(_ rest: Substring) throws -> RedisConfiguration {
        guard !rest.contains("?") else {
            throw invalid("query parameters are not supported in redis:// URLs ('\(redacted)'); put the database in the path: redis://host:port/2")
        }
        let (authority, path) = splitAuthority(rest)
        let (credentials, hostPart) = try splitCredentials(authority)
        let (host, port) = try parseHostPort(hostPart, defaultPort: 6379)
        let database = try parseDatabasePath(path)
        return RedisConfiguration(endpoint: .tcp(host: host, port: port),
                                  username: credentials.username, password: credentials.password, database: database)
    }

    private func parseUnix(_ rest: Substring) throws -> RedisConfiguration {
        let pathPart: Substring
        let query: Substring?
        if let mark = rest.firstIndex(of: "?") {
            pathPart = rest[..<mark]
            query = rest[rest.index(after: mark)...]
        } else {
            pathPart = rest
            query = nil
        }
        guard pathPart.hasPrefix("/"), pathPart.count > 1 else {
            throw invalid("unix:// URL needs an absolute socket path, e.g. unix:///var/run/redis.sock (three slashes)")
        }
        let path = try percentDecoded(pathPart, what: "socket path")
        var database = 0
        var username: String?
        var password: String?
        for pair in (query ?? "").split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(parts[0])
            let value = parts.count == 2 ? parts[1] : ""
            switch key {
            case "db":
                guard let number = Int(value), number >= 0 else {
                    throw invalid("db=\(value) in unix:// URL is not a database number (0, 1, 2, …)")
                }
                database = number
            case "password": password = try percentDecoded(value, what: "password")
            case "username", "user": username = try percentDecoded(value, what: "username")
            default:
                throw invalid("unknown query parameter '\(key)' in unix:// URL; known: db, password, username")
            }
        }
        return RedisConfiguration(endpoint: .unixSocket(path: path), username: username, password: password, database: database)
    }

    private func parseSentinel(_ rest: Substring) throws -> RedisConfiguration {
        guard !rest.contains("?") else {
            throw invalid("query parameters are not supported in redis-sentinel:// URLs")
        }
        let (authority, path) = splitAuthority(rest)
        let (credentials, hostList) = try splitCredentials(authority)
        guard !hostList.isEmpty else {
            throw invalid("redis-sentinel:// URL lists no sentinels; expected redis-sentinel://host1:26379,host2:26379/masterName")
        }
        let sentinels = try hostList.split(separator: ",", omittingEmptySubsequences: false).map { entry in
            let (host, port) = try parseHostPort(entry, defaultPort: 26379)
            return RedisConfiguration.SentinelAddress(host: host, port: port)
        }
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        guard let name = segments.first, !name.isEmpty else {
            throw invalid("redis-sentinel:// URL has no master name; expected redis-sentinel://host:26379/masterName[/db]")
        }
        guard segments.count <= 2 else {
            throw invalid("redis-sentinel:// path '\(path)' has too many parts; expected /masterName or /masterName/db")
        }
        var database = 0
        if segments.count == 2 {
            let text = segments[segments.index(after: segments.startIndex)]
            guard let number = Int(text), number >= 0 else {
                throw invalid("database '\(text)' in redis-sentinel:// URL is not a number (0, 1, 2, …)")
            }
            database = number
        }
        return RedisConfiguration(endpoint: .sentinel(masterName: try percentDecoded(name, what: "master name"), sentinels: sentinels),
                                  username: credentials.username, password: credentials.password, database: database)
    }

    // MARK: - Parts

    private func splitAuthority(_ rest: Substring) -> (authority: Substring, path: Substring) {
        guard let slash = rest.firstIndex(of: "/") else { return (rest, "") }
        return (rest[..<slash], rest[slash...])
    }

    private func splitCredentials(_ authority: Substring) throws -> (credentials: (username: String?, password: String?), host: Substring) {
        guard let at = authority.lastIndex(of: "@") else { return ((nil, nil), authority) }
        let userinfo = authority[..<at]
        guard let colon = userinfo.firstIndex(of: ":") else {
            throw invalid("credentials must be 'user:password@' or ':password@' (no ':' found before '@')")
        }
        let user = userinfo[..<colon]
        let password = userinfo[userinfo.index(after: colon)...]
        return ((user.isEmpty ? nil : try percentDecoded(user, what: "username"),
                 password.isEmpty ? nil : try percentDecoded(password, what: "password")),
                authority[authority.index(after: at)...])
    }

    private func parseHostPort(_ text: Substring, defaultPort: Int) throws -> (String, Int) {
        var host: Substring
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw invalid("IPv6 host '\(text)' lacks its closing ']'") }
            host = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw invalid("unexpected '\(after)' after IPv6 host [\(host)]") }
                portText = after.dropFirst()
            }
        } else if let colon = text.firstIndex(of: ":") {
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        } else {
            host = text
        }
        guard !host.isEmpty else { throw invalid("missing host in '\(redacted)'") }
        guard let portText else { return (String(host), defaultPort) }
        guard let port = Int(portText), (1...65535).contains(port) else {
            throw invalid("port '\(portText)' of host \(host) is not a number between 1 and 65535")
        }
        return (String(host), port)
    }

    private func parseDatabasePath(_ path: Substring) throws -> Int {
        let text = path.drop { $0 == "/" }
        if text.isEmpty { return 0 }
        guard path.hasPrefix("/"), !text.contains("/"), let number = Int(text), number >= 0 else {
            throw invalid("path '\(path)' is not a database number; expected /0, /1, …")
        }
        return number
    }

    private func percentDecoded(_ text: Substring, what: String) throws -> String {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                throw invalid("bad percent-encoding in \(what) (expected %XX)")
            }
            bytes.append(high << 4 | low)
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else {
            throw invalid("\(what) is not valid UTF-8 after percent-decoding")
        }
        return decoded
    }

    private func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// The URL with any password replaced by "***", for messages.
    private var redacted: String {
        guard let separator = url.firstRange(of: "://") else { return url.contains("@") ? "***" : url }
        let rest = url[separator.upperBound...]
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        var result = String(url[..<separator.upperBound])
        if let at = rest[..<authorityEnd].lastIndex(of: "@") {
            let userinfo = rest[..<at]
            let user = userinfo.firstIndex(of: ":").map { userinfo[..<$0] } ?? ""
            result += "\(user):***" + rest[at...]
        } else {
            result += rest
        }
        if let query = result.firstIndex(of: "?"), result[query...].contains("password") {
            result = String(result[..<query]) + "?…"
        }
        return result
    }

    private func invalid(_ message: String) -> RedisError {
        .invalidURL(message)
    }
}
