@testable import PortcullisGateway
import NIOCore
import NIOEmbedded
import Testing

/// The connection's own deadlines in an `EmbeddedChannel`. They come from the real clock, so each
/// test waits a little real time and then runs the loop's timers up to now.
@Suite("connection timeouts", .serialized)
struct ConnectionTimeoutHandlerTests {
    final class Counter {
        var value = 0
    }

    func channel(counter: Counter) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ConnectionTimeoutHandler(
            headReadTimeout: .seconds(30), idleTimeout: .seconds(30), responseWriteTimeout: .milliseconds(100)) { counter.value += 1 })
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    /// The client stops taking bytes: the channel's buffer went over its high-water mark.
    func stall(_ channel: EmbeddedChannel) {
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
    }

    func runTimers(_ channel: EmbeddedChannel, after wait: Duration) async throws {
        try await Task.sleep(for: wait)
        channel.embeddedEventLoop.advanceTime(to: .now())
    }

    @Test("a client that stops taking its response past the write timeout is counted and closed")
    func stalledReaderClosed() async throws {
        let counter = Counter()
        let channel = try channel(counter: counter)
        stall(channel)
        try await runTimers(channel, after: .milliseconds(40))
        #expect(channel.isActive && counter.value == 0)
        try await runTimers(channel, after: .milliseconds(150))
        #expect(!channel.isActive)
        #expect(counter.value == 1)
    }

    @Test("a client that drains its buffer in time keeps its connection")
    func drainedInTime() async throws {
        let counter = Counter()
        let channel = try channel(counter: counter)
        stall(channel)
        try await runTimers(channel, after: .milliseconds(40))
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        try await runTimers(channel, after: .milliseconds(150))
        #expect(channel.isActive)
        #expect(counter.value == 0)
        _ = try? channel.finish()
    }
}
