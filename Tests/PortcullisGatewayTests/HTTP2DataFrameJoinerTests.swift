@testable import PortcullisGateway
import NIOCore
import NIOEmbedded
import Testing

/// `HTTP2DataFrameJoiner` on an embedded channel: what one read's small DATA frames become, and
/// what passes as it came. (With real peers: `HTTP2UpstreamFaultTests`; against a whole-buffer
/// reading with reads cut at random: the `http2-frames` fuzz harness in `HTTP2FrameGuardTests`.)
@Suite("HTTP/2 DATA frame joiner")
struct HTTP2DataFrameJoinerTests {
    static let preface = HTTP2FrameGuardTests.preface

    static func frame(type: UInt8, flags: UInt8 = 0, stream: UInt32, payload: [UInt8] = []) -> [UInt8] {
        HTTP2FrameGuardTests.frame(type: type, flags: flags, stream: stream, payload: payload)
    }

    static func data(_ stream: UInt32, _ bytes: String, end: Bool = false) -> [UInt8] {
        frame(type: 0, flags: end ? 0x1 : 0, stream: stream, payload: Array(bytes.utf8))
    }

    /// A padded DATA frame: the pad-length byte, `bytes`, `padding` zeros.
    static func padded(_ stream: UInt32, _ bytes: String, padding: Int, end: Bool = false) -> [UInt8] {
        frame(type: 0, flags: 0x8 | (end ? 0x1 : 0), stream: stream, payload: [UInt8(padding)] + Array(bytes.utf8) + Array(repeating: 0, count: padding))
    }

    static let headers = frame(type: 0x1, flags: 0x4, stream: 1, payload: [0x83, 0x84, 0x86])
    static let windowUpdate = frame(type: 0x8, stream: 0, payload: [0, 0, 0, 1])

    /// Feeds `reads` to a joiner on a client connection (after the preface); returns each read's
    /// output, as the reads the next handler gets.
    static func join(_ reads: [[UInt8]]) throws -> [[[UInt8]]] {
        let channel = EmbeddedChannel(handler: HTTP2DataFrameJoiner(prefaceBytes: 24))
        var out: [[[UInt8]]] = []
        for read in reads {
            try channel.writeInbound(ByteBuffer(bytes: read))
            var passed: [[UInt8]] = []
            while let part = try channel.readInbound(as: ByteBuffer.self) { passed.append(Array(part.readableBytesView)) }
            out.append(passed)
        }
        _ = try channel.finish()
        return out
    }

    @Test("a read of 1-byte DATA frames on three streams, interleaved, is passed on as one DATA frame per stream carrying its bytes in order, END_STREAM on the one whose last frame had it; the frames before and after the run keep their places")
    func interleavedStreamsAreJoinedPerStream() throws {
        let run = Self.data(1, "a") + Self.data(3, "b") + Self.data(5, "c") + Self.data(1, "d") + Self.data(3, "e") + Self.data(5, "f", end: true)
        let passed = try Self.join([Self.preface + Self.headers + run + Self.windowUpdate])
        #expect(passed[0].joined().elementsEqual(Self.preface + Self.headers + Self.data(1, "ad") + Self.data(3, "be") + Self.data(5, "cf", end: true) + Self.windowUpdate))
    }

    @Test("a read with one small DATA frame, or small frames with other frames between them, is passed on as it came, in one piece")
    func readsWithoutARunPassAsTheyCame() throws {
        let read = Self.preface + Self.headers + Self.data(1, "a") + Self.windowUpdate + Self.data(1, "b") + Self.frame(type: 0x3, stream: 1, payload: [0, 0, 0, 8])
        let passed = try Self.join([read])
        #expect(passed[0] == [read])
    }

    @Test("a stream's bytes are joined into frames of at most 16 384 bytes, and nothing is joined after its END_STREAM (the frame after it is passed on for swift-nio-http2 to refuse)")
    func joinedFramesStayWithinTheFrameSizeAndTheStreamsEnd() throws {
        let many = (0..<20_000).flatMap { _ in Self.data(1, "x") }
        let passed = try Self.join([Self.preface + many + Self.data(3, "a", end: true) + Self.data(3, "b") + Self.data(5, "c") + Self.data(5, "d", end: true) + Self.data(5, "e")])
        let expected = Self.preface + Self.data(1, String(repeating: "x", count: 16_384)) + Self.data(1, String(repeating: "x", count: 3_616))
            + Self.data(3, "a", end: true) + Self.data(3, "b") + Self.data(5, "cd", end: true) + Self.data(5, "e")
        #expect(passed[0].joined().elementsEqual(expected))
    }

    @Test("padded DATA frames are joined padded, their whole length counted as flow control counts it, with at most 255 bytes of padding a frame; a frame whose padding is longer than its payload is passed on as it came and ends the run")
    func paddingIsKeptForFlowControl() throws {
        // Three frames of 102 bytes each (pad length, "x", 100 zeros): two fit one frame's
        // padding (202 bytes: the pad-length byte and 201), the third begins another.
        let frames = Self.padded(1, "x", padding: 100) + Self.data(1, "y") + Self.padded(1, "z", padding: 100) + Self.padded(1, "w", padding: 100, end: true)
        let invalid = Self.frame(type: 0, flags: 0x8, stream: 3, payload: [5, 0x61, 0x62])
        let passed = try Self.join([Self.preface + frames + invalid + Self.data(3, "c") + Self.data(3, "d")])
        let expected = Self.preface + Self.padded(1, "xyz", padding: 201) + Self.padded(1, "w", padding: 100, end: true) + invalid + Self.data(3, "cd")
        #expect(passed[0].joined().elementsEqual(expected))
        // The flow-controlled lengths agree: 102 + 1 + 102 + 102.
        #expect(expected.count - Self.preface.count - invalid.count - Self.data(3, "cd").count == 2 * 9 + 307)
    }

    @Test("a stream's END_STREAM is not moved ahead of another stream's frame that came before it: the run is passed on first")
    func endStreamKeepsItsPlaceAmongStreams() throws {
        let passed = try Self.join([Self.preface + Self.data(1, "a") + Self.data(3, "b") + Self.data(1, "c", end: true) + Self.data(3, "d")])
        #expect(passed[0].joined().elementsEqual(Self.preface + Self.data(1, "a") + Self.data(3, "b") + Self.data(1, "c", end: true) + Self.data(3, "d")))
        // The stream's part is the run's last: joined.
        let last = try Self.join([Self.preface + Self.data(3, "b") + Self.data(1, "a") + Self.data(1, "c", end: true)])
        #expect(last[0].joined().elementsEqual(Self.preface + Self.data(3, "b") + Self.data(1, "ac", end: true)))
    }

    @Test("a DATA frame with no data and no END_STREAM (empty, or padding only) is not joined and ends the run, as swift-nio-http2 counts such frames in a row; with END_STREAM it is joined")
    func emptyFramesAreNotJoined() throws {
        let empty = Self.data(1, "")
        let paddingOnly = Self.frame(type: 0, flags: 0x8, stream: 3, payload: [2, 0, 0])
        let read = Self.preface + Self.data(1, "x") + empty + Self.data(1, "y") + paddingOnly + Self.data(3, "z")
        #expect(try Self.join([read])[0] == [read])
        let ending = try Self.join([Self.preface + Self.data(1, "x") + Self.data(1, "", end: true)])
        #expect(ending[0].joined().elementsEqual(Self.preface + Self.data(1, "x", end: true)))
    }

    @Test("a joined frame carries at most 256 bytes of padding (the pad-length byte and 255): at 256 the frames are joined, at 257 a second frame begins")
    func paddingBound() throws {
        // Each frame's pad-length byte and padding: 128 + 128, then 128 + 129.
        let within = Self.padded(1, "a", padding: 127) + Self.padded(1, "b", padding: 127)
        #expect(try Self.join([Self.preface + within])[0].joined().elementsEqual(Self.preface + Self.padded(1, "ab", padding: 255)))
        let beyond = Self.padded(1, "a", padding: 127) + Self.padded(1, "b", padding: 128)
        #expect(try Self.join([Self.preface + beyond])[0].joined().elementsEqual(Self.preface + beyond))
    }

    @Test("extension frames inside a run are dropped, so that they cannot break it; a frame cut by the read's end is passed on as it came, and its stream's frames in the next read are joined after it")
    func extensionFramesAndCutFrames() throws {
        let unknown = Self.frame(type: 0xFA, stream: 1, payload: [1, 2, 3])
        let cut = Self.data(1, "c")
        let passed = try Self.join([Self.preface + Self.data(1, "a") + unknown + Self.data(1, "b") + cut.prefix(4),
                                    Array(cut.dropFirst(4)) + Self.data(1, "d") + Self.data(1, "e")])
        #expect(passed[0].joined().elementsEqual(Self.preface + Self.data(1, "ab") + cut.prefix(4)))
        #expect(passed[1].joined().elementsEqual(Array(cut.dropFirst(4)) + Self.data(1, "de")))
        // An extension frame outside a run is the guard's to drop: passed on.
        #expect(try Self.join([Self.preface + unknown + Self.data(1, "a")])[0].joined().elementsEqual(Self.preface + unknown + Self.data(1, "a")))
    }

    @Test("on a connection to an upstream (no preface), DATA frames on stream 0 and frames over 1 024 bytes are not joined; the small ones after them are")
    func streamZeroAndLargeFramesPass() throws {
        let channel = EmbeddedChannel(handler: HTTP2DataFrameJoiner(prefaceBytes: 0))
        let large = Self.data(1, String(repeating: "L", count: 1_025))
        let read = Self.data(0, "a") + Self.data(0, "b") + large + Self.data(1, "c") + Self.data(1, "d")
        try channel.writeInbound(ByteBuffer(bytes: read))
        var passed: [UInt8] = []
        while let part = try channel.readInbound(as: ByteBuffer.self) { passed += part.readableBytesView }
        #expect(passed == Self.data(0, "a") + Self.data(0, "b") + large + Self.data(1, "cd"))
        _ = try channel.finish()
    }
}
