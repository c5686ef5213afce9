@testable import PortcullisFuzz
@testable import PortcullisGateway
import NIOCore
import NIOEmbedded
import NIOHTTP2
import Testing

/// `HTTP2FrameGuard` on an embedded channel: frames found whatever the reads' boundaries, the
/// peer's HPACK table size clamped, WINDOW_UPDATE floods closed, rapid reset counted by what it
/// costs.
@Suite("HTTP/2 frame guard")
struct HTTP2FrameGuardTests {
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    static func frame(type: UInt8, flags: UInt8 = 0, stream: UInt32 = 0, payload: [UInt8] = []) -> [UInt8] {
        let length = payload.count
        return [UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF), type, flags,
                UInt8(stream >> 24 & 0x7F), UInt8(stream >> 16 & 0xFF), UInt8(stream >> 8 & 0xFF), UInt8(stream & 0xFF)] + payload
    }

    static func setting(_ id: UInt16, _ value: UInt32) -> [UInt8] {
        [UInt8(id >> 8), UInt8(id & 0xFF), UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }

    /// `bytes` cut at `cuts` (sorted offsets) into reads.
    static func pieces(_ bytes: [UInt8], cuts: [Int]) -> [[UInt8]] {
        var result: [[UInt8]] = []
        var start = 0
        for cut in cuts + [bytes.count] where cut > start {
            result.append(Array(bytes[start..<cut]))
            start = cut
        }
        return result
    }

    @Test("every frame header is found, whatever the reads' boundaries, after the preface or without one")
    func scannerFindsEveryHeader() throws {
        var random = SystemRandomNumberGenerator()
        let frames: [(UInt8, UInt8, UInt32, Int)] = [(4, 0, 0, 12), (1, 4, 1, 30), (0, 0, 1, 16_384), (8, 0, 1, 4), (0, 1, 3, 0), (9, 0, 1, 7), (6, 1, 0, 8)]
        var bytes: [UInt8] = []
        for (type, flags, stream, length) in frames {
            bytes += Self.frame(type: type, flags: flags, stream: stream, payload: (0..<length).map { UInt8(truncatingIfNeeded: $0) })
        }
        let expected = frames.map { HTTP2FrameScanner.Header(length: $0.3, type: $0.0, flags: $0.1, streamID: $0.2) }
        for preface in [true, false] {
            let input = (preface ? Self.preface : []) + bytes
            for round in 0..<300 {
                let cuts = round == 0 ? Array(1..<input.count) : (0..<Int.random(in: 0...20, using: &random)).map { _ in Int.random(in: 1..<input.count, using: &random) }.sorted()
                var scanner = HTTP2FrameScanner(prefaceBytes: preface ? 24 : 0)
                var found: [HTTP2FrameScanner.Header] = []
                for piece in Self.pieces(input, cuts: cuts) {
                    let buffer = ByteBuffer(bytes: piece)
                    var index = buffer.readerIndex
                    while index < buffer.writerIndex {
                        if let header = scanner.scan(buffer, from: &index) { found.append(header) }
                    }
                }
                #expect(found == expected, "cuts \(cuts)")
            }
        }
    }

    @Test("the http2-frames fuzz harness holds for its seeds and for 3 000 random streams of frames, extension frames and runs of DATA frames among them (headers at the reference's offsets, the guard passing on what a whole-buffer reading says, and the DATA frame joiner each stream's bytes and ends, whatever the cuts)")
    func fuzzHarnessProperties() throws {
        var random = SystemRandomNumberGenerator()
        for seed in HTTP2FramesHarness.seeds { HTTP2FramesHarness.run(seed) }
        for _ in 0..<3_000 {
            var input: [UInt8] = [UInt8.random(in: 0...1, using: &random), UInt8.random(in: 0...255, using: &random)]
            if input[0] == 1 { input += Self.preface }
            // Runs of DATA frames for the joiner: half the frames are DATA.
            for _ in 0..<Int.random(in: 0...16, using: &random) {
                let length = Int.random(in: 0...40, using: &random)
                let type = Bool.random(using: &random) ? 0 : [UInt8](0...12).randomElement(using: &random)! | (Int.random(in: 0..<8, using: &random) == 0 ? 0xF0 : 0)
                input += Self.frame(type: type, flags: UInt8.random(in: 0...255, using: &random),
                                    stream: UInt32.random(in: 0...9, using: &random), payload: (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) })
            }
            // Sometimes a stream cut short, or ending in bytes that are no frame.
            if Bool.random(using: &random) { input.removeLast(min(input.count - 2, Int.random(in: 0...12, using: &random))) }
            HTTP2FramesHarness.run(input)
        }
    }

    @Test("a peer's SETTINGS_HEADER_TABLE_SIZE above 4 096 reaches swift-nio-http2 as 4 096; every other byte passes unchanged, whatever the reads' boundaries")
    func headerTableSizeIsClamped() throws {
        var random = SystemRandomNumberGenerator()
        let settings = Self.frame(type: 4, payload: Self.setting(3, 100) + Self.setting(1, 0xFFFF_FFFF) + Self.setting(4, 1 << 20))
        let small = Self.frame(type: 4, payload: Self.setting(1, 1024))
        let ack = Self.frame(type: 4, flags: 1)
        let headers = Self.frame(type: 1, flags: 5, stream: 1, payload: Array(repeating: 0x82, count: 40))
        let input = Self.preface + settings + headers + ack + small + Self.frame(type: 0, flags: 1, stream: 1, payload: Array(repeating: 7, count: 100))
        var expected = input
        // The value of SETTINGS_HEADER_TABLE_SIZE: after the preface, the frame header and one entry, past its identifier.
        let value = 24 + 9 + 6 + 2
        expected.replaceSubrange(value..<value + 4, with: [0, 0, 0x10, 0])
        for round in 0..<300 {
            let cuts = round == 0 ? Array(1..<input.count) : (0..<Int.random(in: 0...12, using: &random)).map { _ in Int.random(in: 1..<input.count, using: &random) }.sorted()
            let channel = EmbeddedChannel(handler: HTTP2FrameGuard(role: .server))
            for piece in Self.pieces(input, cuts: cuts) { try channel.writeInbound(ByteBuffer(bytes: piece)) }
            var out: [UInt8] = []
            while let part = try channel.readInbound(as: ByteBuffer.self) { out += Array(part.readableBytesView) }
            #expect(out == expected, "cuts \(cuts)")
            _ = try channel.finish()
        }
    }

    @Test("a stream's WINDOW_UPDATE frames beyond 16 and what the DATA frames sent on it earn (two a frame, one a KiB) end the connection with the guard's error, once; credit earned on another stream does not count for it")
    func windowUpdateFloodClosesTheConnection() throws {
        let raised = RaisedErrors()
        let channel = EmbeddedChannel(handlers: [HTTP2FrameGuard(role: .server), raised])
        try channel.writeInbound(ByteBuffer(bytes: Self.preface + Self.request(1) + Self.request(5)))
        // Two DATA frames on stream 1 earn it 2 + 2 and 2 + 0 updates beyond its 16; ten on stream 5 earn stream 1 nothing.
        for size in [2048, 952] { try channel.writeOutbound(IOData.byteBuffer(ByteBuffer(bytes: Self.frame(type: 0, stream: 1, payload: Array(repeating: 1, count: size))))) }
        for _ in 0..<10 { try channel.writeOutbound(IOData.byteBuffer(ByteBuffer(bytes: Self.frame(type: 0, stream: 5, payload: [1])))) }
        try channel.writeInbound(Self.updates(1, 22))
        #expect(raised.errors.isEmpty)
        while try channel.readInbound(as: ByteBuffer.self) != nil {}
        try channel.writeInbound(Self.updates(1, 2))
        #expect(raised.errors.count == 1 && raised.errors.first is HTTP2FrameGuard.WindowUpdateFlood, "\(raised.errors)")
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil, "bytes passed on after the 23rd update")
        try channel.writeInbound(Self.updates(1, 2))
        #expect(raised.errors.count == 1)
    }

    static func updates(_ stream: UInt32, _ count: Int) -> ByteBuffer {
        ByteBuffer(bytes: Array(Array(repeating: frame(type: 8, stream: stream, payload: [0, 0, 0, 1]), count: count).joined()))
    }

    @Test("WINDOW_UPDATE frames on the connection and WINDOW_UPDATE and RST_STREAM frames on streams that are over share a budget of 100, four per stream opened and what the DATA frames sent earn (two a frame, one a KiB); one beyond it ends the connection with the guard's error and nothing after it is passed on, on a client connection and on one to an upstream")
    func connectionLevelFramesHaveABudget() throws {
        for role in [HTTP2FrameGuard.Role.server, .client] {
            let raised = RaisedErrors()
            let channel = EmbeddedChannel(handlers: [HTTP2FrameGuard(role: role), raised])
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            // Streams 1 and 3 opened (by the client, or by the gateway to an upstream) and ended both
            // ways, with four DATA frames from the gateway, one of 3 KiB; the answers' HEADERS earn nothing.
            if role == .server {
                try channel.writeInbound(ByteBuffer(bytes: Self.preface + Self.request(1) + Self.request(3)))
                try channel.writeOutbound(IOData.byteBuffer(ByteBuffer(bytes:
                    Self.frame(type: 1, flags: 4, stream: 1, payload: [0x88]) + Self.frame(type: 0, flags: 1, stream: 1, payload: [1])
                    + Self.frame(type: 1, flags: 4, stream: 3, payload: [0x88]) + Self.frame(type: 0, stream: 3, payload: [1])
                    + Self.frame(type: 0, stream: 3, payload: [1]) + Self.frame(type: 0, flags: 1, stream: 3, payload: Array(repeating: 1, count: 3072)))))
            } else {
                try channel.writeOutbound(IOData.byteBuffer(ByteBuffer(bytes:
                    Self.preface + Self.frame(type: 1, flags: 4, stream: 1, payload: [0x82]) + Self.frame(type: 1, flags: 4, stream: 3, payload: [0x82])
                    + Self.frame(type: 0, flags: 1, stream: 1, payload: [1]) + Self.frame(type: 0, stream: 3, payload: [1])
                    + Self.frame(type: 0, stream: 3, payload: [1]) + Self.frame(type: 0, flags: 1, stream: 3, payload: Array(repeating: 1, count: 3072)))))
                try channel.writeInbound(ByteBuffer(bytes: Self.frame(type: 1, flags: 5, stream: 1, payload: [0x88]) + Self.frame(type: 1, flags: 5, stream: 3, payload: [0x88])))
            }
            // 100 + 4 × 2 + (2 × 4 + 3) = 119: 63 connection-level updates, 28 updates and 28 resets of closed streams.
            try channel.writeInbound(Self.updates(0, 63))
            try channel.writeInbound(Self.updates(1, 28))
            try channel.writeInbound(ByteBuffer(bytes: Array((0..<28).map { _ in Self.reset(3) }.joined())))
            #expect(raised.errors.isEmpty, "\(role): \(raised.errors)")
            while try channel.readInbound(as: ByteBuffer.self) != nil {}
            try channel.writeInbound(ByteBuffer(bytes: Self.frame(type: 8, stream: 0, payload: [0, 0, 0, 1]) + Self.request(5)))
            #expect(try channel.readInbound(as: ByteBuffer.self) == nil, "\(role): bytes passed on after the 120th")
            #expect(raised.errors.count == 1 && raised.errors.first is HTTP2ConnectionFrameBudget.Flood, "\(role): \(raised.errors)")
        }
    }

    /// The build before dropped extension frames without counting them: a client sending empty
    /// ones kept a core busy for as long as its connection lived (an attacker review: one
    /// request of another client took 23 s on a debug build).
    @Test("extension frames, dropped, cost the connection's frame budget: 100 on a connection, four more for each stream opened; the next ends the connection with the guard's error and nothing after it is passed on, on a client connection and on one to an upstream")
    func extensionFramesSpendTheConnectionBudget() throws {
        for role in [HTTP2FrameGuard.Role.server, .client] {
            let raised = RaisedErrors()
            let channel = EmbeddedChannel(handlers: [HTTP2FrameGuard(role: role), raised])
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            if role == .server {
                try channel.writeInbound(ByteBuffer(bytes: Self.preface + Self.request(1)))
            } else {
                try channel.writeOutbound(IOData.byteBuffer(ByteBuffer(bytes: Self.preface + Self.frame(type: 1, flags: 5, stream: 1, payload: [0x82]))))
            }
            while try channel.readInbound(as: ByteBuffer.self) != nil {}
            // 104 extension frames of types PRIORITY_UPDATE, ALTSVC, ORIGIN and 0xfa, cut across reads.
            let extensions = (0..<104).flatMap { index in Self.frame(type: [0x10, 0xA, 0xC, 0xFA][index % 4], stream: 0, payload: [UInt8](repeating: 7, count: index % 5)) }
            for piece in Self.pieces(extensions, cuts: Array(stride(from: 5, to: extensions.count, by: 37))) {
                try channel.writeInbound(ByteBuffer(bytes: piece))
            }
            #expect(raised.errors.isEmpty, "\(role): \(raised.errors)")
            #expect(try channel.readInbound(as: ByteBuffer.self) == nil, "\(role): an extension frame was passed on")
            try channel.writeInbound(ByteBuffer(bytes: Self.frame(type: 0xFA, stream: 0) + Self.frame(type: 6, stream: 0, payload: Array(repeating: 0, count: 8))))
            #expect(try channel.readInbound(as: ByteBuffer.self) == nil, "\(role): bytes passed on after the 105th")
            #expect(raised.errors.count == 1 && raised.errors.first is HTTP2ConnectionFrameBudget.Flood, "\(role): \(raised.errors)")
        }
    }

    static func update(_ stream: UInt32, by increment: UInt32) -> [UInt8] {
        frame(type: 8, stream: stream, payload: [UInt8(increment >> 24), UInt8(increment >> 16 & 0xFF), UInt8(increment >> 8 & 0xFF), UInt8(increment & 0xFF)])
    }

    static func data(_ stream: UInt32, _ length: Int) -> IOData {
        IOData.byteBuffer(ByteBuffer(bytes: frame(type: 0, stream: stream, payload: Array(repeating: 1, count: length))))
    }

    /// Writes `bytes` as two reads cut at `cut`.
    static func writeCut(_ channel: EmbeddedChannel, _ bytes: [UInt8], at cut: Int) throws {
        try channel.writeInbound(ByteBuffer(bytes: Array(bytes[..<min(cut, bytes.count)])))
        try channel.writeInbound(ByteBuffer(bytes: Array(bytes[min(cut, bytes.count)...])))
    }

    @Test("a peer keeping a stream's window at a byte, updating it by one for each 1-byte frame it gets, earns nothing by those frames and is cut after its 16; one updating a spent window by 512 bytes per 512-byte frame, as Go's net/http does for a reader taking 512 bytes at a time, keeps even, and by 256 is cut; with the window opened by an update, cut across reads at every point, 1-byte frames earn two updates each; SETTINGS_INITIAL_WINDOW_SIZE changes move open streams' windows")
    func windowLimitedFramesEarnByBytesOnly() throws {
        // (initial window set after stream 1 opened, opening update, each round's update and frame, rounds expected)
        let cases: [(initial: UInt32, opening: UInt32?, step: UInt32, rounds: Int)] = [
            (1, nil, 1, 17), (512, nil, 512, 300), (256, nil, 256, 17), (1, 1 << 20, 1, 300),
        ]
        for (initial, opening, step, expected) in cases {
            let raised = RaisedErrors()
            let channel = EmbeddedChannel(handlers: [HTTP2FrameGuard(role: .server), raised])
            try channel.writeInbound(ByteBuffer(bytes: Self.preface + Self.request(1) + Self.frame(type: 4, stream: 0, payload: Self.setting(4, initial))
                                                + Self.update(0, by: 1 << 30)))
            try channel.writeOutbound(IOData.byteBuffer(ByteBuffer(bytes: Self.frame(type: 1, flags: 4, stream: 1, payload: [0x88]))))
            try channel.writeOutbound(Self.data(1, Int(initial)))
            if let opening { try Self.writeCut(channel, Self.update(1, by: opening), at: 11) }
            var rounds = 0
            while rounds < 300, raised.errors.isEmpty {
                try Self.writeCut(channel, Self.update(1, by: step), at: rounds % 14)
                try channel.writeOutbound(Self.data(1, Int(step)))
                rounds += 1
            }
            if expected == 300 {
                #expect(raised.errors.isEmpty && rounds == 300, "\(initial), \(step): \(raised.errors)")
            } else {
                #expect(rounds == expected && raised.errors.first is HTTP2FrameGuard.WindowUpdateFlood, "\(initial), \(step): \(rounds): \(raised.errors)")
            }
        }
    }

    @Test("a peer keeping the connection's window at a byte, updating it by one for each 1-byte frame, spends the connection's budget and is cut; one opening it by 16 KiB at a time, its updates cut at every point across reads, is not")
    func connectionWindowLimitedFramesEarnNoFrameCredit() throws {
        for open in [false, true] {
            let raised = RaisedErrors()
            let channel = EmbeddedChannel(handlers: [HTTP2FrameGuard(role: .server), raised])
            try channel.writeInbound(ByteBuffer(bytes: Self.preface + Self.frame(type: 4, stream: 0, payload: Self.setting(4, 1 << 30)) + Self.request(1)))
            try channel.writeOutbound(IOData.byteBuffer(ByteBuffer(bytes: Self.frame(type: 1, flags: 4, stream: 1, payload: [0x88]))))
            // The connection's first 65 535 bytes: 3 frames of 16 KiB (18 earned each) and one
            // cut short by the window (31, by its bytes).
            for length in [16_384, 16_384, 16_384, 16_383] { try channel.writeOutbound(Self.data(1, length)) }
            var updates = 0
            while updates < 1000, raised.errors.isEmpty {
                let update = Self.update(0, by: open ? 16_384 : 1)
                // Cut at a point that moves through the frame's 13 bytes.
                let cut = updates % 14
                try channel.writeInbound(ByteBuffer(bytes: Array(update[..<cut])))
                try channel.writeInbound(ByteBuffer(bytes: Array(update[cut...])))
                try channel.writeOutbound(Self.data(1, 1))
                updates += 1
            }
            if open {
                #expect(raised.errors.isEmpty && updates == 1000, "\(raised.errors)")
            } else {
                // 100 + 4 (stream 1) + 3 × 18 + 31 = 189.
                #expect(updates == 190 && raised.errors.first is HTTP2ConnectionFrameBudget.Flood, "\(updates): \(raised.errors)")
            }
        }
    }

    /// The guard and what it raises: errors are kept, not thrown at the next write.
    final class RaisedErrors: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        var errors: [any Error] = []
        func errorCaught(context: ChannelHandlerContext, error: any Error) { errors.append(error) }
    }

    static func reset(_ stream: UInt32) -> [UInt8] { frame(type: 3, stream: stream, payload: [0, 0, 0, 8]) }
    static func request(_ stream: UInt32) -> [UInt8] { frame(type: 1, flags: 5, stream: stream, payload: [0x82]) }

    @Test("on a client connection, more than 200 streams reset by the client within a second of opening, before the gateway's response head, end the connection (rapid reset); resets of streams the gateway had answered (wholly or its head only) or reset itself, or opened a second before, are not counted, and nothing after the 201st is passed on")
    func prematureResetsEndTheConnection() async throws {
        let raised = RaisedErrors()
        let channel = EmbeddedChannel(handlers: [HTTP2FrameGuard(role: .server), raised])
        try channel.writeInbound(ByteBuffer(bytes: Self.preface))
        var stream: UInt32 = 1
        // 300 answered, 300 with a response head only, 300 reset by the gateway; each then reset by the client.
        let answers: [(UInt32) -> [UInt8]] = [
            { Self.frame(type: 1, flags: 5, stream: $0, payload: [0x88]) },
            { Self.frame(type: 1, flags: 4, stream: $0, payload: [0x88]) },
            { Self.reset($0) },
        ]
        for answer in answers {
            for _ in 0..<300 {
                try channel.writeInbound(ByteBuffer(bytes: Self.request(stream)))
                try channel.writeOutbound(IOData.byteBuffer(ByteBuffer(bytes: answer(stream))))
                try channel.writeInbound(ByteBuffer(bytes: Self.reset(stream)))
                stream += 2
            }
        }
        // 300 opened, and reset unanswered a second later.
        try channel.writeInbound(ByteBuffer(bytes: Array((0..<300).map { Self.request(stream + 2 * $0) }.joined())))
        try await Task.sleep(for: .milliseconds(1100))
        try channel.writeInbound(ByteBuffer(bytes: Array((0..<300).map { Self.reset(stream + 2 * $0) }.joined())))
        stream += 600
        // 200 reset before their answer, in one read: still within the limit.
        try channel.writeInbound(ByteBuffer(bytes: Array((0..<200).map { Self.request(stream + 2 * $0) + Self.reset(stream + 2 * $0) }.joined())))
        stream += 400
        #expect(raised.errors.isEmpty, "\(raised.errors)")
        while try channel.readInbound(as: ByteBuffer.self) != nil {}
        try channel.writeInbound(ByteBuffer(bytes: Self.request(stream) + Self.reset(stream) + Self.request(stream + 2)))
        #expect(raised.errors.count == 1 && raised.errors.first is HTTP2PrematureResets.Flood, "\(raised.errors)")
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil, "bytes passed on after the 201st")
        try channel.writeInbound(ByteBuffer(bytes: Self.request(stream + 4)))
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil && raised.errors.count == 1)
    }

    @Test("a reset window counts what fell within it, keeps at most what it was told to, and forgets what is older")
    func resetWindowSlides() {
        var window = HTTP2ResetWindow(window: .seconds(30), keep: 3)
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        #expect([0, 1, 2, 3, 4].map { window.note(at: start + .seconds($0)) } == [1, 2, 3, 3, 3])
        #expect(window.note(at: start + .seconds(33)) == 3, "the resets at 2, 3 and 4 s are 31, 30 and 29 s old: two remain")
        #expect(window.note(at: start + .seconds(70)) == 1)
        var premature = HTTP2PrematureResets()
        #expect((0..<200).allSatisfy { premature.noteReset(openedAt: start, now: start + .milliseconds($0)) == false })
        #expect(premature.noteReset(openedAt: start + .milliseconds(200), now: start + .milliseconds(1_199)) == true)
        var other = HTTP2PrematureResets()
        #expect((0..<300).allSatisfy { _ in other.noteReset(openedAt: start, now: start + .seconds(1)) == false }, "a stream that lived a second")
        #expect((0..<200).allSatisfy { _ in other.noteReset(openedAt: start + .seconds(31), now: start + .seconds(31)) == false })
    }

    @Test("on a connection to an upstream, the upstream's resets are not counted as rapid reset, however many come before the gateway's end")
    func upstreamResetsAreNotCounted() throws {
        let raised = RaisedErrors()
        let channel = EmbeddedChannel(handlers: [HTTP2FrameGuard(role: .client), raised])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeOutbound(IOData.byteBuffer(ByteBuffer(bytes: Self.preface)))
        for index in 0..<500 {
            let stream = UInt32(1 + 2 * index)
            try channel.writeOutbound(IOData.byteBuffer(ByteBuffer(bytes: Self.frame(type: 1, flags: 4, stream: stream, payload: [0x82]))))
            try channel.writeInbound(ByteBuffer(bytes: Self.reset(stream)))
        }
        #expect(raised.errors.isEmpty && channel.isActive)
    }

    @Test("the connection error handler answers the guard's rapid-reset error with GOAWAY ENHANCE_YOUR_CALM, last stream 0, and counts it once")
    func guardErrorIsAnsweredWithGoAway() throws {
        var errors = 0
        let channel = EmbeddedChannel(handler: HTTP2ConnectionErrorHandler(linger: nil, onMalformedStream: { _ in }) { _ in errors += 1 })
        channel.pipeline.fireErrorCaught(HTTP2PrematureResets.Flood())
        channel.pipeline.fireErrorCaught(HTTP2PrematureResets.Flood())
        let frame = try channel.readOutbound(as: HTTP2Frame.self)
        guard case .goAway(let last, let code, _)? = frame?.payload else {
            Issue.record("no GOAWAY: \(String(describing: frame))")
            return
        }
        #expect(last == .rootStream && code == .enhanceYourCalm && errors == 1)
        #expect(try channel.readOutbound(as: HTTP2Frame.self) == nil)
    }

    @Test("a stream is tracked from its HEADERS until both sides ended it or either reset it")
    func budgetTracksStreams() {
        var budget = HTTP2WindowUpdateBudget()
        budget.headers(on: 1, endStream: false, fromPeer: true)
        budget.headers(on: 3, endStream: true, fromPeer: true)
        budget.headers(on: 5, endStream: false, fromPeer: true)
        #expect(budget.trackedStreams == 3)
        budget.headers(on: 1, endStream: false, fromPeer: false)
        _ = budget.dataSent(on: 1, length: 1, endStream: true, connectionWindowSpent: false)
        #expect(budget.trackedStreams == 3, "one side only")
        budget.dataReceived(on: 1, endStream: true)
        budget.headers(on: 3, endStream: true, fromPeer: false)
        budget.reset(5)
        #expect(budget.trackedStreams == 0)
        // Updates on a stream no longer tracked are not counted here (no stream channel queues
        // them) but by the connection's budget.
        #expect((0..<100).allSatisfy { _ in budget.windowUpdate(on: 1) == .untracked })
        #expect(budget.trackedStreams == 0 && budget.reset(1) == .untracked)
    }
}
