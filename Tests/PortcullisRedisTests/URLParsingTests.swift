import PortcullisRedis
import Testing

@Suite("Redis URL parsing")
struct URLParsingTests {
    @Test("redis:// with host, port, credentials and database")
    func redisURLs() throws {
        let full = try RedisConfiguration(url: "redis://alice:p%40ss%3Aword@cache.internal:6380/3")
        guard case .tcp(let host, let port) = full.endpoint else { Issue.record("not tcp: \(full.endpoint)"); return }
        #expect(host == "cache.internal")
        #expect(port == 6380)
        #expect(full.username == "alice")
        #expect(full.password == "p@ss:word")
        #expect(full.database == 3)
        #expect(full.connectTimeout == .seconds(2))
        #expect(full.commandTimeout == .seconds(2))

        let passwordOnly = try RedisConfiguration(url: "redis://:secret@127.0.0.1:6379")
        #expect(passwordOnly.username == nil)
        #expect(passwordOnly.password == "secret")
        #expect(passwordOnly.database == 0)

        let bare = try RedisConfiguration(url: "REDIS://localhost")
        guard case .tcp("localhost", 6379) = bare.endpoint else { Issue.record("default port: \(bare.endpoint)"); return }
        #expect(bare.password == nil)

        let ipv6 = try RedisConfiguration(url: "redis://[::1]:7000/")
        guard case .tcp("::1", 7000) = ipv6.endpoint else { Issue.record("IPv6: \(ipv6.endpoint)"); return }
    }

    @Test("unix:// with database and password in the query")
    func unixURLs() throws {
        let configuration = try RedisConfiguration(url: "unix:///var/run/redis/redis.sock?db=2&password=pa%26ss&username=bob")
        guard case .unixSocket(let path) = configuration.endpoint else { Issue.record("not unix"); return }
        #expect(path == "/var/run/redis/redis.sock")
        #expect(configuration.database == 2)
        #expect(configuration.password == "pa&ss")
        #expect(configuration.username == "bob")

        let plain = try RedisConfiguration(url: "unix:///tmp/r.sock")
        #expect(plain.database == 0)
        #expect(plain.password == nil)
    }

    @Test("redis-sentinel:// with several sentinels, master name and database")
    func sentinelURLs() throws {
        let configuration = try RedisConfiguration(url: "redis-sentinel://:pw@10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster/4")
        guard case .sentinel(let name, let sentinels) = configuration.endpoint else { Issue.record("not sentinel"); return }
        #expect(name == "mymaster")
        #expect(sentinels == [.init(host: "10.0.0.1", port: 26379), .init(host: "10.0.0.2", port: 26379), .init(host: "::1", port: 26380)])
        #expect(configuration.password == "pw")
        #expect(configuration.database == 4)

        let minimal = try RedisConfiguration(url: "redis-sentinel://s1:5000/cache")
        guard case .sentinel("cache", let one) = minimal.endpoint else { Issue.record("minimal"); return }
        #expect(one == [.init(host: "s1", port: 5000)])
        #expect(minimal.database == 0)
    }

    @Test("bad URLs are rejected with a message saying what is wrong", arguments: [
        ("host:6379", "no scheme"),
        ("http://host", "unknown scheme 'http://'"),
        ("redis://:6379", "missing host"),
        ("redis://host:notaport", "port 'notaport'"),
        ("redis://host:70000", "between 1 and 65535"),
        ("redis://host:6379/x", "not a database number"),
        ("redis://host:6379/1/2", "not a database number"),
        ("redis://host:6379?db=1", "query parameters are not supported"),
        ("redis://secretonly@host", "credentials must be"),
        ("redis://:bad%zz@host", "percent-encoding in password"),
        ("redis://[::1:6379", "closing ']'"),
        ("unix://relative.sock", "absolute socket path"),
        ("unix:///tmp/r.sock?db=-1", "db=-1"),
        ("unix:///tmp/r.sock?timeout=5", "unknown query parameter 'timeout'"),
        ("redis-sentinel://s1:26379", "no master name"),
        ("redis-sentinel://s1:26379/", "no master name"),
        ("redis-sentinel:///mymaster", "lists no sentinels"),
        ("redis-sentinel://s1:26379,s2:x/m", "port 'x'"),
        ("redis-sentinel://s1/m/db", "database 'db'"),
        ("redis-sentinel://s1/m/1/extra", "too many parts"),
    ])
    func badURLs(url: String, expected: String) {
        #expect {
            _ = try RedisConfiguration(url: url)
        } throws: { error in
            guard let error = error as? RedisError, case .invalidURL(let message) = error else { return false }
            #expect(message.contains(expected), "message: \(message)")
            #expect(error.description.hasPrefix("invalid Redis URL: "))
            return true
        }
    }

    @Test("passwords never appear in error messages")
    func passwordRedacted() {
        for url in ["redis://user:hunter2@host:6379?db=1", "redis://:hunter2@:6379", "unix:///x.sock?password=hunter2&db=zz"] {
            #expect {
                _ = try RedisConfiguration(url: url)
            } throws: { error in
                !"\(error)".contains("hunter2")
            }
        }
    }
}
