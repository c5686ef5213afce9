import NIOCore
import NIOEmbedded
import PortcullisGateway

/// The `http2-frames` target: `HTTP2FrameScanner`, which finds the frame headers in an HTTP/2
/// connection's bytes for `HTTP2FrameGuard` (hand-written: swift-nio-http2 exposes no frame before
/// it has queued it). The first input byte says whether the bytes begin with the 24-byte client
/// preface (bit 0); the second seeds the points where the rest is cut into reads of 1–32 bytes
/// (1–512 if its top bit is set).
/// Besides not crashing:
///
/// - the headers found, and the offsets where each ends, are those of a plain whole-buffer
///   reading of RFC 9113 §4.1 (`reference`), whatever the cuts;
/// - every byte given is consumed, and after the last one the payload bytes still expected are
///   the reference's;
/// - `HTTP2DataFrameJoiner`, given the same reads, passes on bytes that read as the input does
///   once DATA frames are taken as streams of bytes (`joinedReading`): the other frames unchanged
///   and in their places (extension frames aside), and between them each stream's data, its
///   flow-controlled length and the points where it ends, as the input's; no more frames than the
///   input, none longer than the input's longest or 16 384 bytes;
/// - `HTTP2FrameGuard`, given the same reads, passes on what `guardReference` says for the whole
///   buffer: extension frames dropped, SETTINGS_HEADER_TABLE_SIZE clamped, a header the bytes end
///   in held back (unless it closed the connection for a WINDOW_UPDATE flood, or ended it for
///   rapid reset).
public enum HTTP2FramesHarness {
    public static func run(_ input: [UInt8]) {
        guard input.count >= 2 else { return }
        let preface = input[0] & 1 == 1 ? 24 : 0
        let bytes = Array(input[2...])
        let expected = reference(bytes, preface: preface)

        var reads: [Range<Int>] = []
        // Reads of up to 512 bytes for half the seeds, so that runs of DATA frames fit in one.
        let longestRead: UInt32 = input[1] & 0x80 == 0 ? 32 : 512
        var state = UInt32(input[1]) &* 2_654_435_761 | 1
        while (reads.last?.upperBound ?? 0) < bytes.count {
            state ^= state << 13; state ^= state >> 17; state ^= state << 5
            let start = reads.last?.upperBound ?? 0
            reads.append(start..<min(bytes.count, start + 1 + Int(state % longestRead)))
        }

        var scanner = HTTP2FrameScanner(prefaceBytes: preface)
        var found: [(offset: Int, header: HTTP2FrameScanner.Header)] = []
        for read in reads {
            let start = read.lowerBound
            let buffer = ByteBuffer(bytes: bytes[read])
            var index = buffer.readerIndex
            while index < buffer.writerIndex {
                let before = index
                if let header = scanner.scan(buffer, from: &index) { found.append((start + index, header)) }
                guard index > before || index == buffer.writerIndex else { fatalError("the scanner did not move") }
                guard index <= buffer.writerIndex else { fatalError("read past the bytes given") }
            }
        }
        guard found.count == expected.headers.count, zip(found, expected.headers).allSatisfy({ $0.offset == $1.offset && $0.header == $1.header }) else {
            fatalError("headers \(found) differ from the reference's \(expected.headers)")
        }
        guard scanner.payloadLeft == expected.payloadLeft else {
            fatalError("\(scanner.payloadLeft) payload bytes expected, the reference \(expected.payloadLeft)")
        }

        let joiner = EmbeddedChannel(handler: HTTP2FramePath.makeJoiner(afterPreface: preface > 0))
        var joined: [UInt8] = []
        for read in reads {
            do { try joiner.writeInbound(ByteBuffer(bytes: bytes[read])) } catch { fatalError("the joiner raised \(error)") }
            while let part = try? joiner.readInbound(as: ByteBuffer.self) { joined += part.readableBytesView }
        }
        let joinedAsRead = joinedReading(joined, preface: preface), inputAsRead = joinedReading(bytes, preface: preface)
        guard joinedAsRead.items == inputAsRead.items else {
            fatalError("the joiner passed on \(joined), reading as \(joinedAsRead.items); the input reads as \(inputAsRead.items)")
        }
        guard joinedAsRead.frames <= inputAsRead.frames, joinedAsRead.longest <= max(inputAsRead.longest, HTTP2FramePath.maxJoinedFrameSize) else {
            fatalError("the joiner passed on \(joinedAsRead.frames) frames (longest \(joinedAsRead.longest)) for \(inputAsRead.frames) (longest \(inputAsRead.longest))")
        }
        _ = try? joiner.finish()

        let channel = EmbeddedChannel(handler: HTTP2FramePath.makeGuard(afterPreface: preface > 0))
        var passed: [UInt8] = []
        // Whether the guard raised the error that ends its connection (rapid reset): it reads no
        // more of it, so what it passed on is not compared. Any other error is a failure.
        func endedConnection(_ step: () throws -> Void) -> Bool {
            do {
                try step()
                return false
            } catch {
                guard HTTP2FramePath.endsConnection(error) else { fatalError("the guard raised \(error)") }
                return true
            }
        }
        for read in reads where channel.isActive {
            if endedConnection({ try channel.writeInbound(ByteBuffer(bytes: bytes[read])) }) { return }
            channel.pipeline.fireChannelReadComplete()
            while let part = try? channel.readInbound(as: ByteBuffer.self) { passed += part.readableBytesView }
        }
        guard channel.isActive, !endedConnection({ try channel.throwIfErrorCaught() }) else { return }
        let reference = guardReference(bytes, preface: preface)
        guard passed == reference else { fatalError("the guard passed on \(passed), the reference \(reference)") }
        _ = try? channel.finish()
    }

    /// What `HTTP2FrameGuard` passes on for `bytes`, read whole: the preface; each frame but those
    /// it drops (`HTTP2FramePath.drops`), a SETTINGS frame's (not an ACK, 1 to 16 384 bytes) with
    /// its header table size clamped once it is complete; the start of a header the bytes end in
    /// is held.
    static func guardReference(_ bytes: [UInt8], preface: Int) -> [UInt8] {
        guard bytes.count > preface else { return bytes }
        var out = Array(bytes[..<preface])
        var offset = preface
        while offset + 9 <= bytes.count {
            let length = Int(bytes[offset]) << 16 | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2])
            let type = bytes[offset + 3], flags = bytes[offset + 4]
            let end = min(bytes.count, offset + 9 + length)
            defer { offset = end }
            if HTTP2FramePath.drops(type: type) { continue }
            guard type == 4, flags & 1 == 0, length > 0, length <= 16_384 else {
                out += bytes[offset..<end]
                continue
            }
            // A SETTINGS payload is held until complete.
            guard end == offset + 9 + length else { break }
            var frame = Array(bytes[offset..<end])
            var entry = 9
            while entry + 6 <= frame.count {
                let value = UInt32(frame[entry + 2]) << 24 | UInt32(frame[entry + 3]) << 16 | UInt32(frame[entry + 4]) << 8 | UInt32(frame[entry + 5])
                if frame[entry] == 0, frame[entry + 1] == 1, value > HTTP2FramePath.maxHeaderTableSize {
                    let clamped = HTTP2FramePath.maxHeaderTableSize
                    frame.replaceSubrange(entry + 2..<entry + 6, with: [UInt8(clamped >> 24), UInt8(clamped >> 16 & 0xFF), UInt8(clamped >> 8 & 0xFF), UInt8(clamped & 0xFF)])
                }
                entry += 6
            }
            out += frame
        }
        return out
    }

    /// What one stream's DATA frames between two other frames carry: its data, the payload length
    /// flow control counts, and where END_STREAM came (data and flow-controlled offsets).
    struct StreamData: Equatable, CustomStringConvertible {
        var data: [UInt8] = []
        var flowLength = 0
        var ends: [[Int]] = []
        var description: String { "\(data.count) bytes, flow \(flowLength), ends \(ends)" }
    }

    /// A connection's bytes read whole (after `preface`), for comparing the joiner's output with
    /// its input: frames other than DATA frames of a stream with valid padding and with data or
    /// END_STREAM kept whole, in order; between them, the runs of such DATA frames as streams of
    /// bytes (`StreamData` per stream: frames' boundaries and the order of streams do not count);
    /// extension frames left out (the guard drops them); what the bytes end in, whole. With the
    /// frames' count and the longest frame's payload.
    enum JoinedItem: Equatable {
        case preface([UInt8])
        case frame([UInt8])
        case run([UInt32: StreamData])
        case end([UInt8])
    }

    static func joinedReading(_ bytes: [UInt8], preface: Int) -> (items: [JoinedItem], frames: Int, longest: Int) {
        var items: [JoinedItem] = [.preface(Array(bytes.prefix(preface)))]
        var offset = min(preface, bytes.count)
        var run: [UInt32: StreamData] = [:]
        var frames = 0, longest = 0
        func endRun() {
            guard !run.isEmpty else { return }
            items.append(.run(run))
            run = [:]
        }
        while offset + 9 <= bytes.count {
            let length = Int(bytes[offset]) << 16 | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2])
            guard offset + 9 + length <= bytes.count else { break }
            let type = bytes[offset + 3], flags = bytes[offset + 4]
            let stream = (UInt32(bytes[offset + 5]) << 24 | UInt32(bytes[offset + 6]) << 16 | UInt32(bytes[offset + 7]) << 8 | UInt32(bytes[offset + 8])) & 0x7FFF_FFFF
            let payload = Array(bytes[offset + 9..<offset + 9 + length])
            defer { offset += 9 + length }
            frames += 1
            longest = max(longest, length)
            if HTTP2FramePath.drops(type: type) { continue }
            let padded = flags & 0x8 != 0
            let validPadding = !padded || (length > 0 && Int(payload[0]) < length)
            let data = !validPadding ? [] : padded ? Array(payload[1..<length - Int(payload[0])]) : payload
            // A DATA frame with no data and no END_STREAM stays a frame of its own: swift-nio-http2
            // counts those in a row.
            if type == 0, stream != 0, validPadding, !data.isEmpty || flags & 0x1 != 0 {
                var part = run[stream, default: StreamData()]
                part.data += data
                part.flowLength += length
                if flags & 0x1 != 0 { part.ends.append([part.data.count, part.flowLength]) }
                run[stream] = part
                continue
            }
            endRun()
            items.append(.frame(Array(bytes[offset..<offset + 9 + length])))
        }
        endRun()
        items.append(.end(Array(bytes[offset...])))
        return (items, frames, longest)
    }

    /// RFC 9113 §4.1 read from the whole buffer: the preface, then headers and payloads.
    static func reference(_ bytes: [UInt8], preface: Int) -> (headers: [(offset: Int, header: HTTP2FrameScanner.Header)], payloadLeft: Int) {
        var headers: [(offset: Int, header: HTTP2FrameScanner.Header)] = []
        // Still in the preface: no frame, and no payload expected.
        guard bytes.count >= preface else { return (headers, 0) }
        var offset = preface
        while offset + 9 <= bytes.count {
            let length = Int(bytes[offset]) << 16 | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2])
            let stream = (UInt32(bytes[offset + 5]) << 24 | UInt32(bytes[offset + 6]) << 16 | UInt32(bytes[offset + 7]) << 8 | UInt32(bytes[offset + 8])) & 0x7FFF_FFFF
            headers.append((offset + 9, HTTP2FrameScanner.Header(length: length, type: bytes[offset + 3], flags: bytes[offset + 4], streamID: stream)))
            offset += 9 + length
        }
        return (headers, max(0, offset - bytes.count))
    }

    static var seeds: [[UInt8]] {
        let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
        let settings: [UInt8] = [0, 0, 12, 4, 0, 0, 0, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0, 4, 0, 1, 0, 0]
        let headers: [UInt8] = [0, 0, 3, 1, 5, 0, 0, 0, 1, 0x82, 0x84, 0x86]
        let windowUpdate: [UInt8] = [0, 0, 4, 8, 0, 0, 0, 0, 1, 0, 0, 0, 1]
        let data: [UInt8] = [0, 0, 5, 0, 1, 0, 0, 0, 1] + Array("hello".utf8)
        let smallFrames: [UInt8] = (0..<30).flatMap { i -> [UInt8] in [0, 0, 1, 0, 0, 0, 0, 0, UInt8(1 + 2 * (i % 3)), UInt8(i)] }
        return [
            [1, 7] + preface + settings + headers + windowUpdate + data,
            [0, 200] + settings + [0, 0, 0, 4, 1, 0, 0, 0, 0] + data + windowUpdate + windowUpdate,
            [0, 3] + [0xFF, 0xFF, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF] + data,
            // Extension frames (PRIORITY_UPDATE, an unknown type, ALTSVC) between the others.
            [1, 91] + preface + settings + [0, 0, 6, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x75, 0x3D] + headers
                + [0, 0, 20, 0xFA, 0, 0, 0, 0, 1] + Array(repeating: 0x75, count: 20) + data + [0, 0, 2, 0xA, 0, 0, 0, 0, 0, 0, 0],
            // Runs of 1-byte DATA frames on three streams, an extension frame and a padded frame
            // ending stream 1 among them, then more on stream 1 (after its end).
            [1, 0x85] + preface + settings + headers + smallFrames + [0, 0, 1, 0xFA, 0, 0, 0, 0, 1, 0x75] + smallFrames
                + [0, 0, 4, 0, 0x9, 0, 0, 0, 1, 2, 0x61, 0, 0] + smallFrames + windowUpdate + smallFrames,
            // Padding at its bounds: a pad length of the payload's length less one (no data) and of
            // its length (malformed), a stream's padding reaching 256 bytes and passing it, empty
            // frames with END_STREAM and without, the stream identifier's reserved bit set.
            [0, 0x93] + smallFrames + [0, 0, 3, 0, 0x8, 0, 0, 0, 1, 2, 0, 0] + smallFrames + [0, 0, 3, 0, 0x8, 0, 0, 0, 3, 3, 0, 0]
                + smallFrames + [0, 0, 128, 0, 0x8, 0, 0, 0, 5, 126, 0x61] + Array(repeating: 0, count: 126)
                + [0, 0, 130, 0, 0x8, 0, 0, 0, 5, 128, 0x62] + Array(repeating: 0, count: 128) + [0, 0, 1, 0, 0, 0, 0, 0, 5, 0x63]
                + [0, 0, 0, 0, 0, 0, 0, 0, 1] + [0, 0, 0, 0, 0x1, 0, 0, 0, 3] + [0, 0, 1, 0, 0, 0x80, 0, 0, 1, 0x64] + smallFrames,
        ]
    }
}
