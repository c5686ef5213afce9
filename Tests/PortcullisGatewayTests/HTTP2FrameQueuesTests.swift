@testable import PortcullisGateway
import NIOCore
import NIOEmbedded
import NIOHTTP2
import Testing

/// `HTTP2FrameQueues` and `HTTP2FrameQueueMeter`: the frames swift-nio-http2 queues for streams
/// whose reads are held, counted and bounded per connection — the count alone, then with
/// swift-nio-http2 itself on an embedded channel.
@Suite("HTTP/2 queued frames")
struct HTTP2FrameQueuesTests {
    @Test("frames are counted per stream from its HEADERS until delivered, never below zero; over the limit the stream holding the most is reset until the connection is under it; a stream with no meter is forgotten instead")
    func countsAndSheds() {
        let queues = HTTP2FrameQueues(limit: 10, peerOpensOdd: true)
        var resets: [UInt32] = []
        #expect(!queues.arrived(on: 1), "a stream not opened is not counted")
        #expect(queues.total == 0)
        queues.opened(1)
        // Meters outside a pipeline: a reset only tells.
        let meters = [UInt32(1), 3].map { id in (id, HTTP2FrameQueueMeter(queues: queues) { resets.append(id) }) }
        for (id, meter) in meters { queues.attach(id, meter: meter) }
        queues.opened(5) // no meter: swift-nio-http2 dropped it unseen
        for _ in 0..<4 { _ = queues.arrived(on: 1) }
        for _ in 0..<3 { _ = queues.arrived(on: 3) }
        queues.delivered(on: 3)
        queues.delivered(on: 7)
        #expect(queues.queued(on: 1) == 4 && queues.queued(on: 3) == 2 && queues.total == 6)
        for _ in 0..<5 { queues.delivered(on: 3) }
        #expect(queues.queued(on: 3) == 0 && queues.total == 4, "deliveries beyond what was counted do not go below zero")

        for _ in 0..<6 { #expect(!queues.arrived(on: 5)) }
        #expect(queues.total == 10)
        #expect(queues.arrived(on: 3), "the 11th frame is over the limit")
        #expect(queues.shed() == 0, "the largest, stream 5, had no meter: forgotten, not reset")
        #expect(queues.countedStreams == 2 && queues.total == 5 && resets.isEmpty)

        for _ in 0..<6 { _ = queues.arrived(on: 3) }
        #expect(queues.shed() == 1)
        #expect(resets == [3], "stream 3 held 7 against stream 1's 4")
        #expect(queues.total == 4 && queues.queued(on: 3) == 0)
        #expect(!queues.arrived(on: 3), "a reset stream is no longer counted")

        queues.closed(1)
        #expect(queues.total == 0 && queues.countedStreams == 0)
    }

    @Test("the guard counts the peer's HEADERS, DATA and WINDOW_UPDATE on a stream, opens streams on HEADERS either way — only on IDs above those that side opened before — and ends them on RST_STREAM either way")
    func guardTracksFrames() {
        let queues = HTTP2FrameQueues(limit: 100, peerOpensOdd: true)
        typealias Header = HTTP2FrameScanner.Header
        #expect(!queues.track(Header(length: 3, type: 1, flags: 4, streamID: 1), fromPeer: true))
        #expect(!queues.track(Header(length: 3, type: 1, flags: 4, streamID: 2), fromPeer: false))
        _ = queues.track(Header(length: 1, type: 0, flags: 0, streamID: 1), fromPeer: true)
        _ = queues.track(Header(length: 1, type: 0, flags: 0, streamID: 2), fromPeer: true)
        _ = queues.track(Header(length: 1, type: 0, flags: 0, streamID: 2), fromPeer: false)
        _ = queues.track(Header(length: 5, type: 2, flags: 0, streamID: 1), fromPeer: true) // PRIORITY: never queued on a stream
        _ = queues.track(Header(length: 8, type: 6, flags: 0, streamID: 0), fromPeer: true)
        _ = queues.arrived(on: 2) // a WINDOW_UPDATE past the budget
        #expect(queues.queued(on: 1) == 2 && queues.queued(on: 2) == 2)
        _ = queues.track(Header(length: 4, type: 3, flags: 0, streamID: 1), fromPeer: true)
        _ = queues.track(Header(length: 4, type: 3, flags: 0, streamID: 2), fromPeer: false)
        #expect(queues.countedStreams == 0 && queues.total == 0)
        // HEADERS on a stream that side opened before (in flight when it was reset), or on one
        // the peer may not open (an even one, from a client), open nothing.
        _ = queues.track(Header(length: 3, type: 1, flags: 4, streamID: 1), fromPeer: true)
        _ = queues.track(Header(length: 3, type: 1, flags: 4, streamID: 4), fromPeer: true)
        _ = queues.track(Header(length: 3, type: 1, flags: 4, streamID: 2), fromPeer: false)
        #expect(queues.countedStreams == 0 && queues.total == 0)
        #expect(!queues.track(Header(length: 3, type: 1, flags: 4, streamID: 3), fromPeer: true))
        #expect(queues.countedStreams == 1 && queues.queued(on: 3) == 1)

        // To an upstream: the gateway opens the streams; the upstream's HEADERS (its response)
        // count on one open, and after the gateway reset it, open nothing again.
        let upstream = HTTP2FrameQueues(limit: 100, peerOpensOdd: false)
        _ = upstream.track(Header(length: 3, type: 1, flags: 4, streamID: 1), fromPeer: false)
        _ = upstream.track(Header(length: 3, type: 1, flags: 4, streamID: 1), fromPeer: true)
        #expect(upstream.queued(on: 1) == 1)
        _ = upstream.track(Header(length: 4, type: 3, flags: 0, streamID: 1), fromPeer: false)
        _ = upstream.track(Header(length: 3, type: 1, flags: 5, streamID: 1), fromPeer: true)
        _ = upstream.track(Header(length: 1, type: 0, flags: 0, streamID: 1), fromPeer: true)
        _ = upstream.track(Header(length: 3, type: 1, flags: 4, streamID: 3), fromPeer: true)
        #expect(upstream.countedStreams == 0 && upstream.total == 0)
    }

    /// Holds its stream's reads when `hold` (the gateway's handlers do while the other side cannot
    /// take more), and counts what it is given.
    final class Reader: ChannelDuplexHandler {
        typealias InboundIn = HTTP2Frame.FramePayload
        typealias OutboundIn = HTTP2Frame.FramePayload
        let hold: Bool
        var frames = 0
        init(hold: Bool) { self.hold = hold }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { frames += 1 }
        func read(context: ChannelHandlerContext) { if !hold { context.read() } }
    }

    @Test("swift-nio-http2 on an embedded channel: a held stream sent many 1-byte DATA frames is reset with ENHANCE_YOUR_CALM once the connection's queues pass the limit; a stream read as it goes is not, and keeps its count at zero")
    func heldStreamOfSmallFramesIsReset() throws {
        let frameGuard = HTTP2FrameGuard(role: .server, queueLimit: 64)
        let queues = frameGuard.queues
        let channel = EmbeddedChannel()
        final class Seen {
            var readers: [UInt32: Reader] = [:]
            var resets = 0
        }
        let seen = Seen()
        let bound = NIOLoopBound((queues, seen), eventLoop: channel.eventLoop)
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(frameGuard)
        _ = try sync.configureHTTP2Pipeline(mode: .server, connectionConfiguration: .init(), streamConfiguration: .init()) { stream in
            stream.eventLoop.makeCompletedFuture {
                let (queues, seen) = bound.value
                let id = UInt32(Int(try stream.syncOptions!.getOption(HTTP2StreamChannelOptions.streamID)))
                let reader = Reader(hold: id == 1)
                seen.readers[id] = reader
                try stream.pipeline.syncOperations.addHandler(HTTP2FrameQueueMeter(queues: queues) { seen.resets += 1 })
                try stream.pipeline.syncOperations.addHandler(reader)
            }
        }
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        typealias F = HTTP2FrameGuardTests
        // POST / over http: the static table's :method POST, :scheme http, :path /.
        let post: [UInt8] = [0x83, 0x86, 0x84]
        var bytes = F.preface + F.frame(type: 4) + F.frame(type: 1, flags: 4, stream: 1, payload: post)
            + F.frame(type: 1, flags: 4, stream: 3, payload: post)
        for _ in 0..<40 { bytes += F.frame(type: 0, stream: 1, payload: [1]) + F.frame(type: 0, stream: 3, payload: [1]) }
        try channel.writeInbound(ByteBuffer(bytes: bytes))
        channel.pipeline.fireChannelReadComplete()
        #expect(seen.resets == 0 && queues.queued(on: 1) == 41 && queues.queued(on: 3) == 0)
        #expect(seen.readers[3]?.frames == 41 && seen.readers[1]?.frames == 0)

        try channel.writeInbound(ByteBuffer(bytes: Array(Array(repeating: F.frame(type: 0, stream: 1, payload: [1]), count: 30).joined())))
        channel.pipeline.fireChannelReadComplete()
        #expect(seen.resets == 1)
        #expect(queues.countedStreams == 1 && queues.total == 0, "stream 1 no longer counted; stream 3 still is, at zero")
        // What the client had in flight on stream 1 when it was reset: swift-nio-http2 ignores it,
        // and it is not counted again (it would never be delivered).
        try channel.writeInbound(ByteBuffer(bytes: Array(Array(repeating: F.frame(type: 0, stream: 1, payload: [1]), count: 5).joined())))
        channel.pipeline.fireChannelReadComplete()
        #expect(queues.countedStreams == 1 && queues.total == 0)

        // What the gateway sent: a RST_STREAM on stream 1 with ENHANCE_YOUR_CALM (0xb), none on stream 3.
        var sent = ByteBuffer()
        while let part = try channel.readOutbound(as: IOData.self) {
            if case .byteBuffer(var buffer) = part { sent.writeBuffer(&buffer) }
        }
        var resetStreams: [UInt32: UInt32] = [:]
        while let header = sent.readBytes(length: 9) {
            let length = Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
            let stream = (UInt32(header[5]) << 24 | UInt32(header[6]) << 16 | UInt32(header[7]) << 8 | UInt32(header[8])) & 0x7FFF_FFFF
            var payload = sent.readSlice(length: length)!
            if header[3] == 3 { resetStreams[stream] = payload.readInteger(as: UInt32.self) }
        }
        #expect(resetStreams == [1: 0xb])
        _ = try? channel.finish()
    }
}
