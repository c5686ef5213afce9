/// The header of one WebSocket frame (RFC 6455 §5.2), as far as the relay needs it.
public struct WebSocketFrameHeader: Equatable, Sendable {
    /// The final fragment of a message.
    public var fin: Bool
    /// RSV1–RSV3 in the low three bits (extensions such as permessage-deflate use them; the relay
    /// passes them on).
    public var reserved: UInt8
    /// The opcode, 0x0–0xF.
    public var opcode: UInt8
    /// Whether a masking key follows the length (every client frame has one; no server frame does).
    public var masked: Bool
    /// The payload's length in bytes.
    public var payloadLength: UInt64
    /// The header's own length: 2, plus 2 or 8 for an extended length, plus 4 for a masking key.
    public var headerLength: Int

    public init(fin: Bool, reserved: UInt8, opcode: UInt8, masked: Bool, payloadLength: UInt64, headerLength: Int) {
        self.fin = fin
        self.reserved = reserved
        self.opcode = opcode
        self.masked = masked
        self.payloadLength = payloadLength
        self.headerLength = headerLength
    }

    public static let continuation: UInt8 = 0x0
    public static let text: UInt8 = 0x1
    public static let binary: UInt8 = 0x2
    public static let close: UInt8 = 0x8
    public static let ping: UInt8 = 0x9
    public static let pong: UInt8 = 0xA

    /// Close, ping and pong (opcodes 0x8–0xF).
    public var isControl: Bool { opcode & 0x8 != 0 }
}
