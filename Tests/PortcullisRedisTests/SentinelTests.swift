import PortcullisRedis
import PortcullisTestSupport
import Testing

@Suite("Redis Sentinel", .serialized)
struct SentinelTests {
    @Test("the master is found by name, trying sentinels in turn")
    func resolvesMaster() async throws {
        let fixture = try await SentinelFixture.start()
        try await using(fixture) { fixture async throws in
            let deadSentinel = RedisConfiguration.SentinelAddress(host: "127.0.0.1", port: try FreePort.allocate())
            let configuration = RedisConfiguration(endpoint: .sentinel(masterName: fixture.masterName, sentinels: [deadSentinel] + fixture.sentinels),
                                                   database: 1)
            let client = RedisClient(configuration: configuration, eventLoopGroup: TestEnvironment.group, logger: TestEnvironment.logger)
            _ = try await client.send("SET", "resolved", "yes")
            #expect(try fixture.master.cli("-n", "1", "GET", "resolved") == "yes")
            #expect(try await client.send("ROLE").array?.first == .bulk("master"))
            await client.close()

            let unknown = RedisClient(configuration: .init(endpoint: .sentinel(masterName: "nosuchmaster", sentinels: [deadSentinel] + fixture.sentinels)),
                                      eventLoopGroup: TestEnvironment.group, logger: TestEnvironment.logger)
            await #expect {
                _ = try await unknown.send("PING")
            } throws: { error in
                guard case .sentinel(let message) = error as? RedisError else { return false }
                return message.contains("\(deadSentinel): connection refused") && message.contains("does not know master 'nosuchmaster'")
            }
            await unknown.close()
        }
    }

    @Test("after kill -9 of the master, client and subscriber follow the failover")
    func followsFailover() async throws {
        let fixture = try await SentinelFixture.start()
        try await using(fixture) { fixture async throws in
            let client = RedisClient(configuration: fixture.configuration(), eventLoopGroup: TestEnvironment.group, logger: TestEnvironment.logger)
            let subscriber = RedisSubscriber(configuration: fixture.configuration(), eventLoopGroup: TestEnvironment.group,
                                             logger: TestEnvironment.logger,
                                             backoff: .init(initial: .milliseconds(50), maximum: .milliseconds(300)))
            let recorder = EventRecorder(subscriber.events(channels: ["failover"], patterns: []))
            try await recorder.wait(for: "connected") { $0.contains(.connected(reconnect: false)) }
            _ = try await client.send("SET", "k", "before")
            #expect(try await client.send("PUBLISH", "failover", "one").int == 1)
            try await recorder.wait(for: "first message") { $0.contains(.message(channel: "failover", payload: Array("one".utf8))) }

            await fixture.master.kill()
            let (_, errors) = try await eventually(timeout: .seconds(30), every: .milliseconds(200)) {
                try await client.send("SET", "k", "after")
            }
            #expect(!errors.isEmpty, "commands failed while there was no master")
            #expect(try fixture.currentMasterPort() == fixture.replica.port)
            #expect(try fixture.replica.cli("GET", "k") == "after", "the write landed on the promoted replica")
            #expect(try fixture.replica.cli("ROLE").hasPrefix("master"))

            try await recorder.wait(for: "reconnect to the new master", timeout: .seconds(30)) { $0.contains(.connected(reconnect: true)) }
            let (receivers, _) = try await eventually(timeout: .seconds(10)) { try await client.send("PUBLISH", "failover", "two") }
            #expect(receivers.int == 1)
            try await recorder.wait(for: "message after failover") { $0.contains(.message(channel: "failover", payload: Array("two".utf8))) }
            await subscriber.close()
            await client.close()
        }
    }
}
