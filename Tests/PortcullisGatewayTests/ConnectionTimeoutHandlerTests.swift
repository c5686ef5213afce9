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

    func handler(_ channel: EmbeddedChannel) throws -> ConnectionTimeoutHandler {
        try channel.pipeline.syncOperations.handler(type: ConnectionTimeoutHandler.self)
    }

    @Test("a held response write not taken runs the write timeout though the channel stays writable; one taken stops it")
    func heldWriteCounts() async throws {
        let counter = Counter()
        let untaken = try channel(counter: counter)
        try handler(untaken).heldResponseWrite(waits: true)
        try await runTimers(untaken, after: .milliseconds(150))
        #expect(!untaken.isActive)
        #expect(counter.value == 1)

        let taken = try channel(counter: counter)
        try handler(taken).heldResponseWrite(waits: true)
        try await runTimers(taken, after: .milliseconds(40))
        try handler(taken).heldResponseWrite(waits: false)
        try await runTimers(taken, after: .milliseconds(150))
        #expect(taken.isActive)
        #expect(counter.value == 1)
        _ = try? taken.finish()
    }

    @Test("with a held write untaken, the buffer draining below its low-water mark starts the write timeout over rather than stopping it")
    func drainingRestartsWhileHeld() async throws {
        let counter = Counter()
        let channel = try channel(counter: counter)
        stall(channel)
        try await runTimers(channel, after: .milliseconds(20))
        try handler(channel).heldResponseWrite(waits: true)
        try await runTimers(channel, after: .milliseconds(50))
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        // 70 ms after the stall: started over at the drain, so not cut at 100 ms from the stall...
        try await runTimers(channel, after: .milliseconds(60))
        #expect(channel.isActive)
        // ...but cut 100 ms after it, the held write still untaken.
        try await runTimers(channel, after: .milliseconds(120))
        #expect(!channel.isActive)
        #expect(counter.value == 1)
    }
}
