

/// Finds frame boundaries in one direction of a WebSocket's byte stream, reading only each
/// frame's header: the relay forwards the bytes themselves unchanged, so a client's masked frames
/// reach the upstream with their own (still valid) masking keys and nothing is unmasked, copied
/// into frames or re-encoded. NIO's `WebSocketFrameDecoder` does not fit here: it materialises
/// every frame (payload included) and the relay would then have to encode and re-mask it, which
/// was most of the relay's cost (docs/benchmarks.md, "WebSocket").
///
/// Feed it the bytes as they arrive, in any splits: headers split across reads and many frames in
/// one read are both fine. `advance(_:)` consumes bytes up to the next event (a complete header,
/// or the end of a frame's payload) and says how many it took; call it again with the rest.
///
/// Checked from the header alone, before any payload byte is passed on: the masking rule for the
/// direction, reserved opcodes, control frames (≤ 125 bytes, FIN set), the 64-bit length's top
/// bit and `maxPayload`. Not checked (the peers do it, and it does not matter to the gateway):
/// RSV bits (extensions are negotiated end to end), the order of fragments, minimal length
/// encoding, UTF-8 in text frames and the payload of close frames.
public struct WebSocketFrameTracker: Sendable {
    /// Whose frames these are: a client's must be masked, a server's must not (RFC 6455 §5.1).
    public enum Sender: Sendable {
        case client
        case server
    }

    /// What `advance(_:)` stopped at.
    public enum Event: Equatable, Sendable {
        /// A frame's header is complete; its payload (`payloadLength` bytes) follows.
        case header(WebSocketFrameHeader)
        /// The current frame's last byte was consumed (right after its header when the payload is empty).
        case frameEnd
    }

    private enum Stage: Equatable {
        /// Between frames.
        case boundary
        /// The first byte (FIN, RSV, opcode) is read.
        case lengthByte
        /// `remaining` bytes of the 16- or 64-bit extended length are still to come.
        case extendedLength(remaining: Int)
        /// `remaining` bytes of the masking key are still to come.
        case maskKey(remaining: Int)
        /// `remaining` payload bytes are still to come.
        case payload(remaining: UInt64)
        /// A violation was found; nothing more is read.
        case failed(WebSocketFrameViolation)
    }

    public let sender: Sender
    /// The largest payload accepted.
    public let maxPayload: UInt64
    private var stage = Stage.boundary
    private var header = WebSocketFrameHeader(fin: false, reserved: 0, opcode: 0, masked: false, payloadLength: 0, headerLength: 0)

    public init(sender: Sender, maxPayload: UInt64) {
        self.sender = sender
        self.maxPayload = maxPayload
    }

    /// Between frames: the next byte starts a new frame.
    public var atBoundary: Bool { stage == .boundary }

    /// Inside a header (some of its bytes read, not all).
    public var inHeader: Bool {
        switch stage {
        case .lengthByte, .extendedLength, .maskKey: true
        case .boundary, .payload, .failed: false
        }
    }

    /// The frame being read (its header complete, its payload not yet), if any.
    public var currentFrame: WebSocketFrameHeader? {
        if case .payload = stage { return header }
        return nil
    }

    /// Consumes `bytes` up to and including the next event. Returns how many bytes it took and
    /// the event, or all of them and nil when none happened. Once it has thrown it throws again.
    public mutating func advance(_ bytes: UnsafeRawBufferPointer) throws(WebSocketFrameViolation) -> (consumed: Int, event: Event?) {
        var index = 0
        while true {
            switch stage {
            case .failed(let violation):
                throw violation
            case .payload(let remaining):
                let available = UInt64(bytes.count - index)
                if available < remaining {
                    stage = .payload(remaining: remaining - available)
                    return (bytes.count, nil)
                }
                stage = .boundary
                return (index + Int(remaining), .frameEnd)
            case .boundary:
                guard index < bytes.count else { return (index, nil) }
                let byte = bytes[index]
                index += 1
                header = WebSocketFrameHeader(fin: byte & 0x80 != 0, reserved: (byte >> 4) & 0x7, opcode: byte & 0xF,
                                              masked: false, payloadLength: 0, headerLength: 2)
                stage = .lengthByte
            case .lengthByte:
                guard index < bytes.count else { return (index, nil) }
                let byte = bytes[index]
                index += 1
                header.masked = byte & 0x80 != 0
                switch byte & 0x7F {
                case 126:
                    header.headerLength += 2
                    stage = .extendedLength(remaining: 2)
                case 127:
                    header.headerLength += 8
                    stage = .extendedLength(remaining: 8)
                case let length:
                    header.payloadLength = UInt64(length)
                    if let event = try lengthKnown() { return (index, event) }
                }
            case .extendedLength(let remaining):
                guard index < bytes.count else { return (index, nil) }
                header.payloadLength = header.payloadLength << 8 | UInt64(bytes[index])
                index += 1
                if remaining > 1 {
                    stage = .extendedLength(remaining: remaining - 1)
                } else if let event = try lengthKnown() {
                    return (index, event)
                }
            case .maskKey(let remaining):
                // The key itself is not needed: masked bytes are passed on as they are.
                let taken = min(remaining, bytes.count - index)
                index += taken
                guard taken == remaining else {
                    stage = .maskKey(remaining: remaining - taken)
                    return (index, nil)
                }
                return (index, headerComplete())
            }
        }
    }

    /// The length is read: checks the header, then reads the masking key or starts the payload.
    private mutating func lengthKnown() throws(WebSocketFrameViolation) -> Event? {
        if let violation = check() {
            stage = .failed(violation)
            throw violation
        }
        if header.masked {
            header.headerLength += 4
            stage = .maskKey(remaining: 4)
            return nil
        }
        return headerComplete()
    }

    private mutating func headerComplete() -> Event {
        stage = .payload(remaining: header.payloadLength)
        return .header(header)
    }

    private func check() -> WebSocketFrameViolation? {
        switch (sender, header.masked) {
        case (.client, false): return .unmaskedClientFrame
        case (.server, true): return .maskedServerFrame
        default: break
        }
        switch header.opcode {
        case 0x3...0x7, 0xB...0xF: return .reservedOpcode(header.opcode)
        default: break
        }
        if header.payloadLength >> 63 != 0 { return .lengthOutOfRange }
        if header.isControl {
            if header.payloadLength > 125 { return .controlFrameTooLong(header.payloadLength) }
            if !header.fin { return .fragmentedControlFrame }
        }
        if header.payloadLength > maxPayload { return .frameTooLarge(header.payloadLength) }
        return nil
    }
}
