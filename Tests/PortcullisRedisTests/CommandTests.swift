import Logging
import NIOCore
import NIOPosix
import PortcullisRedis
import PortcullisTestSupport
import Synchronization
import Testing

@Suite("Redis commands against a real redis-server")
struct CommandTests {
    @Test("every reply type round-trips")
    func replyTypes() async throws {
        try await withRedis { _, client async throws in
            #expect(try await client.send("SET", "k", "v") == .status("OK"))
            #expect(try await client.send("INCR", "n") == .integer(1))
            #expect(try await client.send("INCRBY", "n", RedisArgument(Int64(41))).int == 42)
            #expect(try await client.send("GET", "missing") == .null)

            let binary: [UInt8] = [0, 1, 0x0d, 0x0a, 0xff, 0, 0x24, 0x2a, 0x0d]
            #expect(try await client.send("SET", RedisArgument(bytes: binary), RedisArgument(bytes: binary)) == .status("OK"))
            #expect(try await client.send("GET", RedisArgument(bytes: binary)) == .bulkString(binary))
            #expect(try await client.send("STRLEN", RedisArgument(bytes: binary)) == .integer(Int64(binary.count)))

            #expect(try await client.send("SET", "empty", "") == .status("OK"))
            let empty = try await client.send("GET", "empty")
            #expect(empty == .bulkString([]))
            #expect(!empty.isNull)

            let large = (0..<1_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            _ = try await client.send("SET", "large", RedisArgument(bytes: large))
            #expect(try await client.send("GET", "large").bytes == large)

            let nested = try await client.send("EVAL", "return {1, {2, 'x', {}}, 'y', redis.error_reply('BOOM inner')}", 0)
            #expect(nested == .array([.integer(1), .array([.integer(2), .bulk("x"), .array([])]), .bulk("y"), .error("BOOM inner")]))
            #expect(try await client.send("MGET", "k", "missing") == .array([.bulk("v"), .null]))
        }
    }

    @Test("error replies are thrown as errorReply with their code; nested errors stay values")
    func errorReplies() async throws {
        try await withRedis { _, client async throws in
            _ = try await client.send("SET", "s", "text")
            await #expect {
                _ = try await client.send("LPUSH", "s", "x")
            } throws: { error in
                guard let error = error as? RedisError, case .errorReply(let message) = error else { return false }
                return error.errorCode == "WRONGTYPE" && message.hasPrefix("WRONGTYPE Operation against a key")
            }
            await #expect {
                _ = try await client.send("NOSUCHCOMMAND")
            } throws: { error in
                (error as? RedisError)?.errorCode == "ERR"
            }
            // The connection is still in step after errors.
            #expect(try await client.send("GET", "s") == .bulk("text"))

            let results = try await client.pipeline([["MULTI"], ["SET", "t", "1"], ["INCR", "s"], ["EXEC"]])
            #expect(results.count == 4)
            #expect(try results[3].get().array?.count == 2)
            guard case .error(let nested)? = try results[3].get().array?.last else {
                Issue.record("EXEC result lacks the nested error: \(results[3])")
                return
            }
            #expect(nested.hasPrefix("ERR value is not an integer"))

            let mixed = try await client.pipeline([["SET", "a", "1"], ["INCR", "s"], ["GET", "a"]])
            #expect(try mixed[0].get() == .status("OK"))
            #expect(throws: RedisError.self) { try mixed[1].get() }
            if case .failure(let error) = mixed[1] { #expect(error.errorCode == "ERR") }
            #expect(try mixed[2].get() == .bulk("1"))
        }
    }

    @Test("10k concurrent commands pipeline and each gets its own reply")
    func concurrentPipelining() async throws {
        try await withRedis { _, client async throws in
            let mismatches = try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<10_000 {
                    group.addTask {
                        let reply = try await client.send("ECHO", RedisArgument("value-\(index)"))
                        return reply == .bulk("value-\(index)") ? 0 : 1
                    }
                }
                return try await group.reduce(0, +)
            }
            #expect(mismatches == 0)

            // One pipeline call: replies in command order, executed in order.
            let commands: [[RedisArgument]] = (0..<10_000).map { ["RPUSH", "list", RedisArgument($0)] }
            let results = try await client.pipeline(commands)
            #expect(try results.map { try $0.get() } == (1...10_000).map { .integer(Int64($0)) })
            let stored = try await client.send("LRANGE", "list", 0, -1).array?.compactMap(\.int)
            #expect(stored == (0..<10_000).map(Int64.init))
        }
    }

    @Test("sendOnLoop issues commands on the client's loop without a hop, in order")
    func sendOnLoop() async throws {
        try await withRedis { _, client async throws in
            let loop = client.eventLoop
            let (values, onLoop) = try await loop.flatSubmit {
                let futures = (0..<1000).map { _ in client.sendOnLoop(["INCR", "counter"]) }
                return EventLoopFuture.whenAllSucceed(futures, on: loop).map { values in
                    (values, loop.inEventLoop)
                }
            }.get()
            #expect(onLoop, "the future completes on the client's loop")
            #expect(values == (1...1000).map { .integer(Int64($0)) }, "replies arrive in issue order")
            #expect(try await client.send("GET", "counter") == .bulk("1000"))
        }
    }

    @Test("sendOnLoop off the client's event loop is a precondition failure")
    func sendOnLoopOffLoop() async {
        await #expect(processExitsWith: .failure) {
            let client = RedisClient(configuration: .init(endpoint: .tcp(host: "127.0.0.1", port: 9)),
                                     eventLoopGroup: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "exit-test"))
            _ = client.sendOnLoop(["PING"])
        }
    }

    @Test("AUTH with password and SELECT put data in the right database")
    func authAndSelect() async throws {
        let server = try await RedisServerFixture.start(password: "pa ss:w@rd")
        try await using(server) { server async throws in
            var configuration = try RedisConfiguration(url: server.url + "/3")
            #expect(configuration.password == "pa ss:w@rd")
            let client = RedisClient(configuration: configuration, eventLoopGroup: TestEnvironment.group, logger: TestEnvironment.logger)
            _ = try await client.send("SET", "where", "db3")
            #expect(try server.cli("-n", "3", "GET", "where") == "db3")
            #expect(try server.cli("-n", "0", "GET", "where") == "")
            await client.close()

            // ACL user with username + password.
            _ = try server.cli("ACL", "SETUSER", "alice", "on", ">alicepw", "~*", "+@all")
            configuration = try RedisConfiguration(url: "redis://alice:alicepw@127.0.0.1:\(server.port)/5")
            let alice = RedisClient(configuration: configuration, eventLoopGroup: TestEnvironment.group, logger: TestEnvironment.logger)
            #expect(try await alice.send("ACL", "WHOAMI") == .bulk("alice"))
            _ = try await alice.send("SET", "who", "alice")
            #expect(try server.cli("-n", "5", "GET", "who") == "alice")
            await alice.close()

            configuration.username = nil
            configuration.password = "wrong"
            let wrong = RedisClient(configuration: configuration, eventLoopGroup: TestEnvironment.group, logger: TestEnvironment.logger)
            await #expect { _ = try await wrong.send("PING") } throws: { ($0 as? RedisError)?.kind == "auth" && "\($0)".contains("WRONGPASS") }
            await wrong.close()

            configuration.password = nil
            let anonymous = RedisClient(configuration: configuration, eventLoopGroup: TestEnvironment.group, logger: TestEnvironment.logger)
            await #expect { _ = try await anonymous.send("PING") } throws: { ($0 as? RedisError)?.kind == "auth" && "\($0)".contains("NOAUTH") }
            await anonymous.close()
        }
    }

    @Test("unix socket endpoint from a unix:// URL")
    func unixSocket() async throws {
        let server = try await RedisServerFixture.start()
        try await using(server) { server async throws in
            let configuration = try RedisConfiguration(url: "unix://\(server.unixSocketPath)?db=2")
            let client = RedisClient(configuration: configuration, eventLoopGroup: TestEnvironment.group, logger: TestEnvironment.logger)
            _ = try await client.send("SET", "via", "unix")
            #expect(try server.cli("-n", "2", "GET", "via") == "unix")
            let info = try await client.send("CLIENT", "INFO").string ?? ""
            #expect(info.contains("addr=\(server.unixSocketPath)") || info.contains("laddr=\(server.unixSocketPath)"), "\(info)")
            await client.close()

            let missing = RedisClient(configuration: .init(endpoint: .unixSocket(path: server.directory + "/nope.sock")),
                                      eventLoopGroup: TestEnvironment.group, logger: TestEnvironment.logger)
            await #expect {
                _ = try await missing.send("PING")
            } throws: { error in
                guard case .connectionRefused(let message) = error as? RedisError else { return false }
                return message.contains("nope.sock")
            }
            await missing.close()
        }
    }

    @Test("EVALSHA falls back to SCRIPT LOAD on NOSCRIPT, also after SCRIPT FLUSH")
    func evalScript() async throws {
        try await withRedis { _, client async throws in
            let script = RedisScript("return ARGV[1] .. ':' .. KEYS[1]")
            #expect(try await client.send("SCRIPT", "EXISTS", RedisArgument(script.sha1)) == .array([.integer(0)]))
            #expect(try await client.evalScript(script, keys: ["key"], arguments: ["arg"]) == .bulk("arg:key"))
            #expect(try await client.send("SCRIPT", "EXISTS", RedisArgument(script.sha1)) == .array([.integer(1)]))

            let failing = RedisScript("return redis.error_reply('CUSTOM failed on purpose')")
            await #expect {
                _ = try await client.evalScript(failing, keys: [], arguments: [])
            } throws: { error in
                (error as? RedisError)?.errorCode == "CUSTOM"
            }

            #expect(try await client.send("SCRIPT", "FLUSH") == .status("OK"))
            #expect(try await client.evalScript(script, keys: ["k2"], arguments: ["a2"]) == .bulk("a2:k2"))
        }
    }

    @Test("a command timeout fails the command and the next command uses a fresh connection")
    func commandTimeout() async throws {
        try await withRedis(configure: { $0.commandTimeout = .milliseconds(300) }) { server, client async throws in
            // Retried because a busy machine can stall even a PING past 300 ms.
            let (firstID, _) = try await eventually(timeout: .seconds(10)) { try await client.send("CLIENT", "ID").int }
            // Had the timeout not fired, the reply would arrive after 2 s and the command succeed.
            await #expect {
                _ = try await client.send("DEBUG", "SLEEP", "2")
            } throws: { error in
                guard case .timeout(let message) = error as? RedisError else { return false }
                return message == "127.0.0.1:\(server.port): no reply within 300 ms"
            }
            // The server is still sleeping; once it wakes, the client reconnects on its own.
            let (id, _) = try await eventually(timeout: .seconds(10)) { try await client.send("CLIENT", "ID").int }
            #expect(id != nil && id != firstID, "a new connection after the timeout")
        }
    }

    @Test("a stopped server (SIGSTOP) times out commands; after SIGCONT the client recovers")
    func stoppedServer() async throws {
        try await withRedis(configure: { $0.commandTimeout = .milliseconds(300) }) { server, client async throws in
            _ = try await eventually(timeout: .seconds(10)) { try await client.send("PING") }
            server.suspend()
            await #expect { _ = try await client.send("PING") } throws: { error in
                if case .timeout = error as? RedisError { true } else { false }
            }
            server.resume()
            let (reply, _) = try await eventually(timeout: .seconds(10)) { try await client.send("PING") }
            #expect(reply == .status("PONG"))
        }
    }

    @Test("connection refused names host and port")
    func connectionRefused() async throws {
        let port = try FreePort.allocate()
        let client = RedisClient(configuration: .init(endpoint: .tcp(host: "127.0.0.1", port: port)),
                                 eventLoopGroup: TestEnvironment.group, logger: TestEnvironment.logger)
        await #expect {
            _ = try await client.send("PING")
        } throws: { error in
            guard case .connectionRefused(let message) = error as? RedisError else { return false }
            return message == "127.0.0.1:\(port): connection refused"
        }
        await #expect { _ = try await client.pipeline([["PING"], ["PING"]]) } throws: {
            if case .connectionRefused = $0 as? RedisError { true } else { false }
        }
        await client.close()
    }

    @Test("connect timeout fires against a listener that never completes the handshake")
    func connectTimeout() async throws {
        let blackhole = try FullBacklogListener()
        defer { blackhole.close() }
        let client = RedisClient(configuration: .init(endpoint: .tcp(host: "127.0.0.1", port: blackhole.port),
                                                      connectTimeout: .milliseconds(200)),
                                 eventLoopGroup: TestEnvironment.group, logger: TestEnvironment.logger)
        let clock = ContinuousClock()
        let started = clock.now
        await #expect {
            _ = try await client.send("PING")
        } throws: { error in
            guard case .timeout(let message) = error as? RedisError else { return false }
            return message == "127.0.0.1:\(blackhole.port): connect timed out after 200 ms"
        }
        #expect(clock.now - started < .seconds(2))
        await client.close()
    }

    @Test("close fails later commands with clientClosed")
    func closeClient() async throws {
        let server = try await RedisServerFixture.start()
        try await using(server) { server async throws in
            let client = RedisClient(configuration: server.configuration(), eventLoopGroup: TestEnvironment.group, logger: TestEnvironment.logger)
            #expect(try await client.send("PING") == .status("PONG"))
            await client.close()
            await #expect {
                _ = try await client.send("PING")
            } throws: { error in
                if case .clientClosed = error as? RedisError { true } else { false }
            }
            #expect(try server.cli("CLIENT", "LIST").split(separator: "\n").count == 1, "only redis-cli itself is connected")
        }
    }

    @Test("a READONLY reply drops a Sentinel-resolved connection but not a plain one")
    func readOnlyReconnects() async throws {
        let sentinel = try await SentinelFixture.start()
        try await using(sentinel) { sentinel async throws in
            let readOnly = RedisScript("return redis.error_reply('READONLY You can\\'t write against a read only replica.')")

            let followed = RedisClient(configuration: sentinel.configuration(), eventLoopGroup: TestEnvironment.group, logger: TestEnvironment.logger)
            let firstID = try await followed.send("CLIENT", "ID").int
            await #expect { _ = try await followed.evalScript(readOnly, keys: [], arguments: []) } throws: {
                ($0 as? RedisError)?.errorCode == "READONLY"
            }
            let secondID = try await followed.send("CLIENT", "ID").int
            #expect(firstID != secondID, "re-resolved through Sentinel on a new connection")
            await followed.close()

            let plain = RedisClient(configuration: sentinel.master.configuration(), eventLoopGroup: TestEnvironment.group, logger: TestEnvironment.logger)
            let plainID = try await plain.send("CLIENT", "ID").int
            await #expect(throws: RedisError.self) { _ = try await plain.evalScript(readOnly, keys: [], arguments: []) }
            #expect(try await plain.send("CLIENT", "ID").int == plainID)
            await plain.close()
        }
    }
}
