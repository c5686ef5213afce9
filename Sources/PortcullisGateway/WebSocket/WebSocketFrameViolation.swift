/// A frame the relay refuses to pass on (the WebSocket is then closed by the gateway).
public enum WebSocketFrameViolation: Error, Equatable, Sendable, CustomStringConvertible {
    /// A frame from the client without a masking key (RFC 6455 §5.1).
    case unmaskedClientFrame
    /// A frame from the server with a masking key (§5.1).
    case maskedServerFrame
    /// An opcode RFC 6455 reserves (0x3–0x7, 0xB–0xF).
    case reservedOpcode(UInt8)
    /// A close, ping or pong frame with more than 125 bytes of payload (§5.5).
    case controlFrameTooLong(UInt64)
    /// A close, ping or pong frame without FIN (§5.5: control frames are not fragmented).
    case fragmentedControlFrame
    /// A 64-bit length with its most significant bit set (§5.2).
    case lengthOutOfRange
    /// A payload longer than the route's `max_frame_bytes` (closed with 1009).
    case frameTooLarge(UInt64)

    public var description: String {
        switch self {
        case .unmaskedClientFrame: "a client frame without a masking key"
        case .maskedServerFrame: "a server frame with a masking key"
        case .reservedOpcode(let opcode): "reserved opcode \(opcode)"
        case .controlFrameTooLong(let length): "a control frame of \(length) bytes (at most 125)"
        case .fragmentedControlFrame: "a fragmented control frame"
        case .lengthOutOfRange: "a 64-bit frame length with its top bit set"
        case .frameTooLarge(let length): "a frame of \(length) bytes, over max_frame_bytes"
        }
    }
}
