import NIOCore
import PortcullisGateway

/// The `http2-frames` target: `HTTP2FrameScanner`, which finds the frame headers in an HTTP/2
/// connection's bytes for `HTTP2FrameGuard` (hand-written: swift-nio-http2 exposes no frame before
/// it has queued it). The first input byte says whether the bytes begin with the 24-byte client
/// preface (bit 0); the second seeds the points where the rest is cut into reads of 1–32 bytes.
/// Besides not crashing:
///
/// - the headers found, and the offsets where each ends, are those of a plain whole-buffer
///   reading of RFC 9113 §4.1 (`reference`), whatever the cuts;
/// - every byte given is consumed, and after the last one the payload bytes still expected are
///   the reference's.
public enum HTTP2FramesHarness {
    public static func run(_ input: [UInt8]) {
        guard input.count >= 2 else { return }
        let preface = input[0] & 1 == 1 ? 24 : 0
        let bytes = Array(input[2...])
        let expected = reference(bytes, preface: preface)

        var scanner = HTTP2FrameScanner(prefaceBytes: preface)
        var found: [(offset: Int, header: HTTP2FrameScanner.Header)] = []
        var state = UInt32(input[1]) &* 2_654_435_761 | 1
        var start = 0
        while start < bytes.count {
            state ^= state << 13; state ^= state >> 17; state ^= state << 5
            let end = min(bytes.count, start + 1 + Int(state % 32))
            let buffer = ByteBuffer(bytes: bytes[start..<end])
            var index = buffer.readerIndex
            while index < buffer.writerIndex {
                let before = index
                if let header = scanner.scan(buffer, from: &index) { found.append((start + index, header)) }
                guard index > before || index == buffer.writerIndex else { fatalError("the scanner did not move") }
                guard index <= buffer.writerIndex else { fatalError("read past the bytes given") }
            }
            start = end
        }
        guard found.count == expected.headers.count, zip(found, expected.headers).allSatisfy({ $0.offset == $1.offset && $0.header == $1.header }) else {
            fatalError("headers \(found) differ from the reference's \(expected.headers)")
        }
        guard scanner.payloadLeft == expected.payloadLeft else {
            fatalError("\(scanner.payloadLeft) payload bytes expected, the reference \(expected.payloadLeft)")
        }
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
        return [
            [1, 7] + preface + settings + headers + windowUpdate + data,
            [0, 200] + settings + [0, 0, 0, 4, 1, 0, 0, 0, 0] + data + windowUpdate + windowUpdate,
            [0, 3] + [0xFF, 0xFF, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF] + data,
        ]
    }
}
