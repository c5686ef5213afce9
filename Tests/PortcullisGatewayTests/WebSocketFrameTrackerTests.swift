@testable import PortcullisGateway
import Testing

/// Frame bytes as RFC 6455 §5.2 lays them out, for the tracker's and the relay's tests.
enum WireFrame {
    /// One frame: the shortest length encoding unless `lengthBytes` (0, 2 or 8) forces one, and a
    /// masking key (the payload masked with it) when `maskKey` is given.
    static func bytes(fin: Bool = true, opcode: UInt8, maskKey: [UInt8]? = nil, payload: [UInt8], lengthBytes: Int? = nil) -> [UInt8] {
        var out: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        let mask: UInt8 = maskKey == nil ? 0 : 0x80
        let width = lengthBytes ?? (payload.count < 126 ? 0 : payload.count <= 0xFFFF ? 2 : 8)
        switch width {
        case 0: out.append(mask | UInt8(payload.count))
        case 2: out += [mask | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        default: out.append(mask | 127); out += (0..<8).reversed().map { UInt8(truncatingIfNeeded: UInt64(payload.count) >> (8 * $0)) }
        }
        guard let maskKey else { return out + payload }
        return out + maskKey + payload.enumerated().map { $0.element ^ maskKey[$0.offset % 4] }
    }
}

@Suite("WebSocket frame tracker")
struct WebSocketFrameTrackerTests {
    /// What the tracker reported while reading `bytes` in pieces ending at `splits`: each event
    /// with the stream offset it happened at.
    static func events(_ bytes: [UInt8], splits: [Int] = [], tracker: inout WebSocketFrameTracker) throws -> [(offset: Int, event: WebSocketFrameTracker.Event)] {
        var found: [(Int, WebSocketFrameTracker.Event)] = []
        var start = 0
        for end in splits + [bytes.count] where end >= start {
            var offset = start
            while true {
                let step = try bytes[offset..<end].withUnsafeBytes { buffer in try tracker.advance(buffer) }
                offset += step.consumed
                guard let event = step.event else { break }
                found.append((offset, event))
            }
            #expect(offset == end)
            start = end
        }
        return found
    }

    static func events(_ bytes: [UInt8], splits: [Int] = [], sender: WebSocketFrameTracker.Sender = .client,
                       maxPayload: UInt64 = 1 << 20) throws -> [(offset: Int, event: WebSocketFrameTracker.Event)] {
        var tracker = WebSocketFrameTracker(sender: sender, maxPayload: maxPayload)
        return try events(bytes, splits: splits, tracker: &tracker)
    }

    static let key: [UInt8] = [0x37, 0xFA, 0x21, 0x3D]

    /// Five masked frames: empty, 7-bit (125), 16-bit (126 and 65 535) and 64-bit (65 536) lengths.
    static let stream: [UInt8] = [0, 125, 126, 65_535, 65_536].flatMap { length in
        WireFrame.bytes(opcode: WebSocketFrameHeader.binary, maskKey: key, payload: (0..<length).map { UInt8(truncatingIfNeeded: $0) })
    }

    static func expected(_ stream: [UInt8]) -> [(offset: Int, event: WebSocketFrameTracker.Event)] {
        var offset = 0
        var out: [(Int, WebSocketFrameTracker.Event)] = []
        for (length, headerLength) in [(0, 6), (125, 6), (126, 8), (65_535, 8), (65_536, 14)] {
            let header = WebSocketFrameHeader(fin: true, reserved: 0, opcode: WebSocketFrameHeader.binary, masked: true,
                                              payloadLength: UInt64(length), headerLength: headerLength)
            offset += headerLength
            out.append((offset, .header(header)))
            offset += length
            out.append((offset, .frameEnd))
        }
        #expect(offset == stream.count)
        return out
    }

    static func same(_ a: [(offset: Int, event: WebSocketFrameTracker.Event)], _ b: [(offset: Int, event: WebSocketFrameTracker.Event)]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0.offset == $1.offset && $0.event == $1.event }
    }

    @Test("frames with 7-, 16- and 64-bit lengths, all in one read, give each header (length, mask, header size) and each frame's end at the right offset")
    func manyFramesInOneRead() throws {
        #expect(Self.same(try Self.events(Self.stream), Self.expected(Self.stream)))
    }

    @Test("the stream split into two reads at every byte offset, or read one byte at a time, gives the same events at the same offsets")
    func everySplit() throws {
        let expected = Self.expected(Self.stream)
        for split in 0...Self.stream.count {
            let found = try Self.events(Self.stream, splits: [split])
            guard Self.same(found, expected) else {
                Issue.record("split at \(split) gives other events")
                return
            }
        }
        let short = Array(Self.stream[..<400])
        let bytewise = try Self.events(short, splits: Array(1..<short.count))
        #expect(Self.same(bytewise, try Self.events(short)))
        // Every header, split at each of its offsets into three reads.
        for (end, event) in expected {
            guard case .header(let header) = event else { continue }
            let start = end - header.headerLength
            for a in start...end {
                for b in a...end where !Self.same(try Self.events(Self.stream, splits: [a, b]), expected) {
                    Issue.record("header at \(start) split at \(a) and \(b) gives other events")
                }
            }
        }
    }

    @Test("the tracker says where it is: at a boundary, inside a header, or inside a frame's payload")
    func position() throws {
        var tracker = WebSocketFrameTracker(sender: .server, maxPayload: 1000)
        #expect(tracker.atBoundary && !tracker.inHeader && tracker.currentFrame == nil)
        let frame = WireFrame.bytes(opcode: WebSocketFrameHeader.text, payload: Array(repeating: 0x61, count: 200))
        _ = try Self.events(Array(frame[..<3]), tracker: &tracker)
        #expect(!tracker.atBoundary && tracker.inHeader && tracker.currentFrame == nil)
        _ = try Self.events(Array(frame[3..<10]), tracker: &tracker)
        #expect(!tracker.inHeader && tracker.currentFrame?.payloadLength == 200)
        let end = try Self.events(Array(frame[10...]), tracker: &tracker)
        #expect(end.map(\.offset) == [frame.count - 10] && tracker.atBoundary)
    }

    @Test("a server's unmasked frames and a fragmented message with a ping between its fragments pass; FIN, opcode and RSV bits are read")
    func serverFramesAndFragments() throws {
        let bytes = WireFrame.bytes(fin: false, opcode: WebSocketFrameHeader.text, payload: Array("hel".utf8))
            + WireFrame.bytes(opcode: WebSocketFrameHeader.ping, payload: [1, 2])
            + WireFrame.bytes(opcode: WebSocketFrameHeader.continuation, payload: Array("lo".utf8))
            + [0xC1, 0x00]  // RSV1 (permessage-deflate), text, empty
        let headers = try Self.events(bytes, sender: .server).compactMap { if case .header(let h) = $0.event { h } else { nil } }
        #expect(headers.map(\.opcode) == [1, 9, 0, 1])
        #expect(headers.map(\.fin) == [false, true, true, true])
        #expect(headers.map(\.reserved) == [0, 0, 0, 4])
    }

    @Test("refused from the header alone: an unmasked client frame, a masked server frame, reserved opcodes, control frames over 125 bytes or fragmented, a 64-bit length with its top bit set, a payload over the limit")
    func violations() throws {
        func refusal(_ bytes: [UInt8], sender: WebSocketFrameTracker.Sender = .client, maxPayload: UInt64 = 1000) -> WebSocketFrameViolation? {
            do {
                _ = try Self.events(bytes, sender: sender, maxPayload: maxPayload)
                return nil
            } catch {
                return error as? WebSocketFrameViolation
            }
        }
        #expect(refusal(WireFrame.bytes(opcode: 1, payload: [0x61])) == .unmaskedClientFrame)
        #expect(refusal(WireFrame.bytes(opcode: 1, maskKey: Self.key, payload: [0x61]), sender: .server) == .maskedServerFrame)
        for opcode: UInt8 in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            #expect(refusal(WireFrame.bytes(opcode: opcode, maskKey: Self.key, payload: [])) == .reservedOpcode(opcode))
        }
        for opcode in [WebSocketFrameHeader.close, WebSocketFrameHeader.ping, WebSocketFrameHeader.pong] {
            #expect(refusal(WireFrame.bytes(opcode: opcode, maskKey: Self.key, payload: Array(repeating: 0, count: 125))) == nil)
            #expect(refusal(WireFrame.bytes(opcode: opcode, maskKey: Self.key, payload: Array(repeating: 0, count: 126))) == .controlFrameTooLong(126))
            #expect(refusal(WireFrame.bytes(fin: false, opcode: opcode, maskKey: Self.key, payload: [])) == .fragmentedControlFrame)
        }
        #expect(refusal([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0] + Self.key) == .lengthOutOfRange)
        #expect(refusal(WireFrame.bytes(opcode: 2, maskKey: Self.key, payload: Array(repeating: 0, count: 1000))) == nil)
        // Only the header is needed to refuse a frame over the limit: no payload byte has come.
        #expect(refusal(Array(WireFrame.bytes(opcode: 2, maskKey: Self.key, payload: Array(repeating: 0, count: 1001))[..<8])) == .frameTooLarge(1001))
        #expect(refusal([0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0] + Self.key, maxPayload: 1 << 30) == .frameTooLarge(1 << 32))
    }

    @Test("after a violation the tracker refuses everything that follows")
    func staysFailed() throws {
        var tracker = WebSocketFrameTracker(sender: .client, maxPayload: 10)
        #expect(throws: WebSocketFrameViolation.unmaskedClientFrame) { _ = try Self.events([0x81, 0x00], tracker: &tracker) }
        #expect(throws: WebSocketFrameViolation.unmaskedClientFrame) {
            _ = try Self.events(WireFrame.bytes(opcode: 1, maskKey: Self.key, payload: []), tracker: &tracker)
        }
    }
}
