@testable import PortcullisGateway
import NIOCore
import NIOEmbedded
import Testing

/// `FlushCoalescingHandler`: the flushes of one event-loop round become one, nothing is held past
/// the round, and a close sends what was written before it.
@Suite("Flush coalescing on HTTP/2 connections")
struct FlushCoalescingHandlerTests {
    /// Counts the flushes that get past the coalescer (it sits between this and the tail).
    final class FlushCounter: ChannelOutboundHandler {
        typealias OutboundIn = NIOAny
        var flushes = 0
        func flush(context: ChannelHandlerContext) {
            flushes += 1
            context.flush()
        }
    }

    private func channel() throws -> (EmbeddedChannel, FlushCounter) {
        let channel = EmbeddedChannel()
        let counter = FlushCounter()
        try channel.pipeline.syncOperations.addHandler(counter)
        try channel.pipeline.syncOperations.addHandler(FlushCoalescingHandler())
        return (channel, counter)
    }

    @Test("three responses flushed in one round leave in one flush when the round ends")
    func flushesOfOneRoundBecomeOne() throws {
        let (channel, counter) = try channel()
        for body in ["one", "two", "three"] {
            channel.writeAndFlush(ByteBuffer(string: body), promise: nil)
        }
        #expect(counter.flushes == 0)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        channel.embeddedEventLoop.run()
        #expect(counter.flushes == 1)
        var sent: [String] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { sent.append(String(buffer: buffer)) }
        #expect(sent == ["one", "two", "three"])
        _ = try channel.finish()
    }

    @Test("a flush in a later round is a flush of its own")
    func laterRoundsFlushAgain() throws {
        let (channel, counter) = try channel()
        channel.writeAndFlush(ByteBuffer(string: "one"), promise: nil)
        channel.embeddedEventLoop.run()
        channel.writeAndFlush(ByteBuffer(string: "two"), promise: nil)
        channel.embeddedEventLoop.run()
        #expect(counter.flushes == 2)
        _ = try channel.finish()
    }

    @Test("a close sends what was written and flushed before it, such as a GOAWAY")
    func closeFlushesFirst() throws {
        let (channel, counter) = try channel()
        let written = channel.eventLoop.makePromise(of: Void.self)
        channel.writeAndFlush(ByteBuffer(string: "goaway"), promise: written)
        channel.close(promise: nil)
        #expect(counter.flushes == 1)
        #expect(throws: Never.self) { try written.futureResult.wait() }
        channel.embeddedEventLoop.run()
        #expect(counter.flushes == 1)
    }
}
