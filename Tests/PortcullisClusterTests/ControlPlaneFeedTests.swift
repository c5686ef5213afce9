import Logging
import NIOPosix
@testable import PortcullisCluster
import PortcullisRedis
import PortcullisTestSupport
import Synchronization
import Testing

/// The control plane's subscription, as a gateway's Redis credential (without the cluster
/// secret) can feed it: only signed acknowledgements count, and nothing over 4 KiB is read.
@Suite("the control plane's feed from the cluster's channels")
struct ControlPlaneFeedTests {
    static let keys = ClusterKeys(prefix: "portcullis:")
    static let mac = ClusterMAC(secret: [UInt8](repeating: 5, count: 32), cluster: "portcullis:")
    static let feed = ControlPlaneFeed(keys: keys, mac: mac, alarm: TamperingAlarm(prefix: keys.prefix, logger: Logger(label: "test")))
    static let ack = NodeAck.signed(node: "gw-1", instance: "a1", epoch: RevocationEpoch.new(nowMillis: 1_764_000_000_000, after: nil),
                                    sequence: 9, last: "lastmac", latencyMicros: 800, mac: mac)

    @Test("a signed acknowledgement, a refetch request and a key-set announcement decode to their events; a forged or moved acknowledgement, one over 1 KiB, a request or announcement over 4 KiB, garbage and another channel decode to nothing")
    func decoding() {
        let feed = Self.feed, keys = Self.keys
        #expect(feed.decode(channel: keys.ackChannel, payload: Array(Self.ack.wireText.utf8)) == .acknowledged(Self.ack))
        #expect(feed.decode(channel: keys.ackChannel, payload: Array(Self.ack.wireText.replacingOccurrences(of: "gw-1", with: "gw-2").utf8)) == nil)
        #expect(feed.decode(channel: keys.ackChannel, payload: Array((Self.ack.wireText + String(repeating: " ", count: 1100)).utf8)) == nil)
        #expect(feed.decode(channel: keys.keySetRefetchChannel, payload: Array("k2 https://idp.test/a b".utf8))
            == .refetchRequested(KeyRefetchRequest(kid: "k2", issuer: "https://idp.test/a b")))
        #expect(feed.decode(channel: keys.keySetChannel, payload: Array("v7 https://idp.test".utf8)) == .keySetAnnounced(issuer: "https://idp.test"))
        let long = "k2 https://idp.test/" + String(repeating: "a", count: 4096)
        #expect(feed.decode(channel: keys.keySetRefetchChannel, payload: Array(long.utf8)) == nil)
        #expect(feed.decode(channel: keys.keySetChannel, payload: Array(long.utf8)) == nil)
        #expect(feed.decode(channel: keys.keySetChannel, payload: Array("nospace".utf8)) == nil)
        #expect(feed.decode(channel: keys.revocationChannel, payload: Array("v7 https://idp.test".utf8)) == nil)
    }

    @Test("through a real Redis, messages a gateway's credential publishes reach the handler as events in order, forged ones left out; a flood past the buffer is reported as overflowed")
    func throughRedis() async throws {
        let redis = try await RedisServerFixture.start()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let client = RedisClient(configuration: redis.configuration(), eventLoopGroup: group, logger: Logger(label: "test"))
        let subscriber = RedisSubscriber(configuration: redis.configuration(), eventLoopGroup: group, logger: Logger(label: "test"))
        let seen = Mutex<[ControlPlaneFeed.Event]>([])
        let reader = Task {
            await Self.feed.run(subscriber) { event in
                seen.withLock { $0.append(event) }
                // A handler busy with one event while a flood comes (as a control plane fetching a set).
                if event == .keySetAnnounced(issuer: "https://slow.test") { try? await Task.sleep(for: .seconds(2)) }
            }
        }
        let keys = Self.keys
        func published(_ channel: String, _ text: String) async throws -> Int64? {
            try await client.send("PUBLISH", RedisArgument(channel), RedisArgument(bytes: Array(text.utf8))).int
        }
        do {
            #expect(try await Poll.until { try await published(keys.keySetChannel, "v0 https://warm.test") == 1 })
            #expect(try await Poll.until { seen.withLock { $0.contains(.keySetAnnounced(issuer: "https://warm.test")) } })
            _ = try await published(keys.ackChannel, Self.ack.wireText.replacingOccurrences(of: " 800 ", with: " 1 "))
            _ = try await published(keys.ackChannel, Self.ack.wireText)
            _ = try await published(keys.keySetRefetchChannel, "k9 https://idp.test")
            _ = try await published(keys.keySetChannel, "v8 https://idp.test")
            let expected: [ControlPlaneFeed.Event] = [.keySetAnnounced(issuer: "https://warm.test"), .acknowledged(Self.ack),
                                                      .refetchRequested(KeyRefetchRequest(kid: "k9", issuer: "https://idp.test")),
                                                      .keySetAnnounced(issuer: "https://idp.test")]
            #expect(try await Poll.until { seen.withLock { $0.count >= 4 } })
            #expect(seen.withLock { $0 } == expected)
            // 2 000 messages of 16 KiB, while the handler is busy, are more than the feed's 16 MiB:
            // some are dropped, and the handler hears it (the control plane then rereads the key set).
            #expect(!seen.withLock { $0.contains(.overflowed) })
            _ = try await published(keys.keySetChannel, "v8 https://slow.test")
            #expect(try await Poll.until { seen.withLock { $0.contains(.keySetAnnounced(issuer: "https://slow.test")) } })
            let big = String(repeating: "x", count: 16 << 10)
            _ = try await client.pipeline((0..<2000).map { _ in ["PUBLISH", RedisArgument(keys.keySetChannel), RedisArgument(bytes: Array(big.utf8))] })
            // Published until heard: the first may come while the buffer is still full.
            #expect(try await Poll.until(timeout: .seconds(20)) {
                _ = try await published(keys.keySetChannel, "v9 https://after.test")
                return seen.withLock { $0.contains(.keySetAnnounced(issuer: "https://after.test")) }
            })
            #expect(seen.withLock { $0.contains(.overflowed) })
        } catch {
            Issue.record(error)
        }
        await subscriber.close()
        await reader.value
        await client.close()
        try? await group.shutdownGracefully()
        await redis.shutdown()
    }
}
