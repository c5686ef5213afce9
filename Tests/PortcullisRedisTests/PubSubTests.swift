import PortcullisRedis
import PortcullisTestSupport
import Testing

@Suite("Redis pub/sub")
struct PubSubTests {
    @Test("SUBSCRIBE and PSUBSCRIBE deliver every message in publish order")
    func ordering() async throws {
        try await withRedis { server, publisher async throws in
            let subscriber = RedisSubscriber(configuration: server.configuration(), eventLoopGroup: TestEnvironment.group,
                                             logger: TestEnvironment.logger)
            let recorder = EventRecorder(subscriber.events(channels: ["orders", "other"], patterns: ["audit.*"]))
            try await recorder.wait(for: "connected") { $0.first == .connected(reconnect: false) }

            var expected: [RedisPubSubEvent] = []
            var commands: [[RedisArgument]] = []
            for index in 0..<2000 {
                let payload = Array("m\(index)".utf8) + [0, 0x0d, 0x0a]
                if index % 3 == 0 {
                    commands.append(["PUBLISH", "audit.login", RedisArgument(bytes: payload)])
                    expected.append(.patternMessage(pattern: "audit.*", channel: "audit.login", payload: payload))
                } else {
                    commands.append(["PUBLISH", "orders", RedisArgument(bytes: payload)])
                    expected.append(.message(channel: "orders", payload: payload))
                }
            }
            commands.append(["PUBLISH", "unrelated", "ignored"])
            let receivers = try await publisher.pipeline(commands).map { try $0.get().int }
            #expect(receivers.prefix(2000).allSatisfy { $0 == 1 })
            #expect(receivers.last == 0)
            let messages = try await recorder.wait(for: "2000 messages") { $0.count >= 2001 }.filter { $0 != .connected(reconnect: false) }
            #expect(messages == expected)
            await subscriber.close()
            await recorder.finished()
        }
    }

    /// A bypass review: a subscription bounded only in number held 1 024 messages of whatever
    /// size a Redis writer published (32 MB each within Redis's limit for subscribers).
    @Test("a subscription with a RedisEventBuffer holds at most its bytes for a consumer that is behind: further messages are dropped and takeOverflow says so once, and what the consumer takes frees room for new ones",
          .timeLimit(.minutes(1)))
    func bufferIsBoundedInBytes() async throws {
        try await withRedis { server, publisher async throws in
            let subscriber = RedisSubscriber(configuration: server.configuration(), eventLoopGroup: TestEnvironment.group,
                                             logger: TestEnvironment.logger)
            var events = subscriber.events(channels: ["flood"], patterns: [], buffer: RedisEventBuffer(events: 100, bytes: 1 << 20)).makeAsyncIterator()
            #expect(await events.next() == .connected(reconnect: false))
            let large = [UInt8](repeating: 0x61, count: 300 << 10)
            for _ in 0..<10 { _ = try await publisher.send("PUBLISH", "flood", RedisArgument(bytes: large)) }
            _ = try await publisher.send("PUBLISH", "flood", "last")
            try await Task.sleep(for: .seconds(1))
            #expect(subscriber.takeOverflow())
            #expect(!subscriber.takeOverflow())
            // Three large ones fit in 1 MiB, then the small one; the other seven were dropped.
            for _ in 0..<3 { #expect(await events.next() == .message(channel: "flood", payload: large)) }
            #expect(await events.next() == .message(channel: "flood", payload: Array("last".utf8)))
            _ = try await publisher.send("PUBLISH", "flood", RedisArgument(bytes: large))
            #expect(await events.next() == .message(channel: "flood", payload: large))
            #expect(!subscriber.takeOverflow())
            await subscriber.close()
        }
    }

    @Test("the subscriber survives a restart: disconnected, connected(reconnect: true), then new messages")
    func survivesRestart() async throws {
        try await withRedis { server, publisher async throws in
            let subscriber = RedisSubscriber(configuration: server.configuration(), eventLoopGroup: TestEnvironment.group,
                                             logger: TestEnvironment.logger,
                                             backoff: .init(initial: .milliseconds(20), maximum: .milliseconds(200)))
            let recorder = EventRecorder(subscriber.events(channels: ["news"], patterns: ["feed.*"]))
            try await recorder.wait(for: "connected") { $0.contains(.connected(reconnect: false)) }
            #expect(try await publisher.send("PUBLISH", "news", "before").int == 1)

            try await server.restart()
            try await recorder.wait(for: "reconnect") { $0.contains(.connected(reconnect: true)) }
            let events = recorder.all
            let disconnected = events.firstIndex { if case .disconnected = $0 { true } else { false } }
            let reconnected = events.firstIndex(of: .connected(reconnect: true))
            #expect(disconnected != nil && reconnected != nil && disconnected! < reconnected!, "\(events)")

            let (receivers, _) = try await eventually(timeout: .seconds(5)) { try await publisher.send("PUBLISH", "news", "after") }
            #expect(receivers.int == 1, "re-subscribed on the new server")
            _ = try await publisher.send("PUBLISH", "feed.x", "pattern-after")
            try await recorder.wait(for: "messages after the restart") {
                $0.contains(.message(channel: "news", payload: Array("after".utf8)))
                    && $0.contains(.patternMessage(pattern: "feed.*", channel: "feed.x", payload: Array("pattern-after".utf8)))
            }
            await subscriber.close()
            await recorder.finished()
        }
    }

    @Test("a subscriber started while the server is down connects once it is up, without reconnect: true")
    func startsWhileDown() async throws {
        try await withRedis { server, publisher async throws in
            await server.stop()
            let subscriber = RedisSubscriber(configuration: server.configuration(), eventLoopGroup: TestEnvironment.group,
                                             logger: TestEnvironment.logger,
                                             backoff: .init(initial: .milliseconds(20), maximum: .milliseconds(100)))
            let recorder = EventRecorder(subscriber.events(channels: ["late"], patterns: []))
            try await recorder.wait(for: "the outage to be reported") { $0.first.map { if case .disconnected = $0 { true } else { false } } ?? false }
            try await Task.sleep(for: .milliseconds(300))
            #expect(recorder.all.count == 1, "one report per outage, not one per attempt: \(recorder.all)")
            try await server.restart()
            try await recorder.wait(for: "connected") { $0.contains(.connected(reconnect: false)) }
            let (receivers, _) = try await eventually(timeout: .seconds(5)) { try await publisher.send("PUBLISH", "late", "hi") }
            #expect(receivers.int == 1)
            try await recorder.wait(for: "message") { $0.contains(.message(channel: "late", payload: Array("hi".utf8))) }
            await subscriber.close()
            await recorder.finished()
        }
    }

    @Test("close finishes the stream; a second events() call reports and finishes")
    func closeAndSecondCall() async throws {
        try await withRedis { server, _ async throws in
            let subscriber = RedisSubscriber(configuration: server.configuration(), eventLoopGroup: TestEnvironment.group,
                                             logger: TestEnvironment.logger)
            let recorder = EventRecorder(subscriber.events(channels: ["a"], patterns: []))
            try await recorder.wait(for: "connected") { $0.contains(.connected(reconnect: false)) }
            var second: [RedisPubSubEvent] = []
            for await event in subscriber.events(channels: ["b"], patterns: []) { second.append(event) }
            #expect(second.count == 1)
            if case .disconnected(let reason)? = second.first { #expect(reason.contains("already called")) }
            await subscriber.close()
            await recorder.finished()
            #expect(try server.cli("PUBSUB", "NUMSUB", "a").hasSuffix("0"), "the subscription is gone")
        }
    }

    @Test("a subscriber needs AUTH and gets it")
    func authenticated() async throws {
        try await withRedis(password: "pubsubpw") { server, publisher async throws in
            let subscriber = RedisSubscriber(configuration: try RedisConfiguration(url: server.url), eventLoopGroup: TestEnvironment.group,
                                             logger: TestEnvironment.logger)
            let recorder = EventRecorder(subscriber.events(channels: ["secure"], patterns: []))
            try await recorder.wait(for: "connected") { $0.contains(.connected(reconnect: false)) }
            _ = try await publisher.send("PUBLISH", "secure", "ok")
            try await recorder.wait(for: "message") { $0.contains(.message(channel: "secure", payload: Array("ok".utf8))) }
            await subscriber.close()
        }
    }

    @Test("the health check notices a server that stopped answering and reconnects after it resumes")
    func healthCheck() async throws {
        try await withRedis { server, publisher async throws in
            var configuration = server.configuration()
            configuration.connectTimeout = .milliseconds(300)
            configuration.commandTimeout = .milliseconds(300)
            let subscriber = RedisSubscriber(configuration: configuration, eventLoopGroup: TestEnvironment.group,
                                             logger: TestEnvironment.logger,
                                             backoff: .init(initial: .milliseconds(20), maximum: .milliseconds(100)),
                                             healthCheckInterval: .milliseconds(200))
            let recorder = EventRecorder(subscriber.events(channels: ["hb"], patterns: []))
            try await recorder.wait(for: "connected") { $0.contains(.connected(reconnect: false)) }
            server.suspend()
            try await recorder.wait(for: "PING timeout") {
                $0.contains { if case .disconnected(let reason) = $0 { reason.contains("PING") } else { false } }
            }
            server.resume()
            try await recorder.wait(for: "reconnect") { $0.contains(.connected(reconnect: true)) }
            let (receivers, _) = try await eventually(timeout: .seconds(5)) { try await publisher.send("PUBLISH", "hb", "back") }
            #expect(receivers.int == 1)
            await subscriber.close()
        }
    }
}
