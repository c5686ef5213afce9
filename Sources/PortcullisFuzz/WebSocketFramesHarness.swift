import PortcullisGateway

/// The `websocket-frames` target: `WebSocketFrameTracker`, which finds the frame boundaries in
/// the bytes the WebSocket relay passes on unchanged. The first input byte picks the sender
/// (bit 0) and the payload limit (bits 1–2); the second seeds the points where the rest is cut
/// into reads. Besides not crashing:
///
/// - the events (each header, each frame's end) and the offsets where they happen are those of a
///   plain whole-buffer reading of RFC 6455 §5.2 (`reference`), whatever the cuts;
/// - a refusal is the reference's (made once the offending header's length is read, so the
///   events before it are the reference's too), and the tracker refuses everything after it;
/// - every byte given is consumed, and after the last one the tracker's position (at a boundary,
///   in a header, in a payload) is the reference's.
public enum WebSocketFramesHarness {
    typealias Found = (offset: Int, event: WebSocketFrameTracker.Event)

    public static func run(_ input: [UInt8]) {
        guard input.count >= 2 else { return }
        let sender: WebSocketFrameTracker.Sender = input[0] & 1 == 0 ? .client : .server
        let maxPayload: UInt64 = [125, 1000, 70_000, 1 << 30][Int(input[0] >> 1) & 3]
        let bytes = Array(input[2...])
        let expected = reference(bytes, sender: sender, maxPayload: maxPayload)

        var tracker = WebSocketFrameTracker(sender: sender, maxPayload: maxPayload)
        var found: [Found] = []
        var refusal: WebSocketFrameViolation?
        var state = UInt32(input[1]) &* 2_654_435_761 | 1
        var start = 0
        reading: while start < bytes.count {
            state ^= state << 13; state ^= state >> 17; state ^= state << 5
            let end = min(bytes.count, start + 1 + Int(state % 24))
            var offset = start
            while true {
                do {
                    let step = try bytes[offset..<end].withUnsafeBytes { buffer in try tracker.advance(buffer) }
                    offset += step.consumed
                    guard offset <= end else { fatalError("consumed past the bytes given") }
                    guard let event = step.event else { break }
                    found.append((offset, event))
                } catch let violation as WebSocketFrameViolation {
                    refusal = violation
                    break reading
                } catch {
                    fatalError("not a violation: \(error)")
                }
            }
            guard offset == end else { fatalError("\(end - offset) bytes not consumed") }
            start = end
        }
        guard found.count == expected.events.count, zip(found, expected.events).allSatisfy({ $0.offset == $1.offset && $0.event == $1.event }) else {
            fatalError("events \(found) differ from the reference's \(expected.events)")
        }
        guard refusal == expected.refusal else { fatalError("refusal \(String(describing: refusal)) differs from \(String(describing: expected.refusal))") }
        if refusal != nil {
            do {
                _ = try [UInt8]().withUnsafeBytes { try tracker.advance($0) }
                fatalError("accepted bytes after a refusal")
            } catch {}
            return
        }
        guard tracker.atBoundary == (expected.end == .boundary), tracker.inHeader == (expected.end == .header),
              (tracker.currentFrame != nil) == (expected.end == .payload) else {
            fatalError("ends \(tracker) where the reference ends \(expected.end)")
        }
    }

    enum Position { case boundary, header, payload }

    /// RFC 6455 §5.2 read the plain way, with the whole buffer at hand.
    static func reference(_ bytes: [UInt8], sender: WebSocketFrameTracker.Sender, maxPayload: UInt64)
        -> (events: [Found], refusal: WebSocketFrameViolation?, end: Position) {
        var events: [Found] = []
        var at = 0
        while at < bytes.count {
            guard bytes.count - at >= 2 else { return (events, nil, .header) }
            let fin = bytes[at] & 0x80 != 0, opcode = bytes[at] & 0x0F, masked = bytes[at + 1] & 0x80 != 0
            var length = UInt64(bytes[at + 1] & 0x7F)
            var headerLength = 2
            let extended = length == 126 ? 2 : length == 127 ? 8 : 0
            if extended > 0 {
                guard bytes.count - at >= 2 + extended else { return (events, nil, .header) }
                length = bytes[(at + 2)..<(at + 2 + extended)].reduce(0) { $0 << 8 | UInt64($1) }
                headerLength += extended
            }
            let violation: WebSocketFrameViolation? =
                sender == .client && !masked ? .unmaskedClientFrame
                : sender == .server && masked ? .maskedServerFrame
                : (3...7).contains(opcode) || opcode >= 0xB ? .reservedOpcode(opcode)
                : length >= 1 << 63 ? .lengthOutOfRange
                : opcode >= 8 && length > 125 ? .controlFrameTooLong(length)
                : opcode >= 8 && !fin ? .fragmentedControlFrame
                : length > maxPayload ? .frameTooLarge(length)
                : nil
            if let violation { return (events, violation, .header) }
            if masked { headerLength += 4 }
            guard bytes.count - at >= headerLength else { return (events, nil, .header) }
            at += headerLength
            events.append((at, .header(WebSocketFrameHeader(fin: fin, reserved: (bytes[at - headerLength] >> 4) & 7, opcode: opcode,
                                                            masked: masked, payloadLength: length, headerLength: headerLength))))
            guard UInt64(bytes.count - at) >= length else { return (events, nil, .payload) }
            at += Int(length)
            events.append((at, .frameEnd))
        }
        return (events, nil, .boundary)
    }

    public static var seeds: [[UInt8]] {
        func frame(_ first: UInt8, masked: Bool, _ payload: [UInt8], length: [UInt8]? = nil) -> [UInt8] {
            let size = length ?? [UInt8(payload.count)]
            var head = [first, size[0] | (masked ? 0x80 : 0)] + size.dropFirst()
            if masked { head += [0x11, 0x22, 0x33, 0x44] }
            return head + payload
        }
        let hello = Array("hello".utf8)
        return [
            [0x00, 0x07] + frame(0x81, masked: true, hello) + frame(0x89, masked: true, []) + frame(0x88, masked: true, [0x03, 0xE8]),
            [0x01, 0x30] + frame(0x01, masked: false, Array("hel".utf8)) + frame(0x8A, masked: false, [1]) + frame(0x80, masked: false, Array("lo".utf8)),
            [0x04, 0x99] + frame(0x82, masked: true, Array(repeating: 0x5A, count: 300), length: [126, 0x01, 0x2C]),
            [0x06, 0x02] + frame(0x82, masked: true, Array(repeating: 0x01, count: 200), length: [127, 0, 0, 0, 0, 0, 0, 0, 200]),
            [0x00, 0x01] + frame(0x81, masked: false, hello),
            [0x01, 0x01] + frame(0x83, masked: false, []) + frame(0x89, masked: false, Array(repeating: 0, count: 126), length: [126, 0, 126]),
        ]
    }
}
