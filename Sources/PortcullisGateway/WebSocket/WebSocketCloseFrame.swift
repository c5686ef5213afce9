import NIOCore
import NIOWebSocket

/// The close frames the gateway writes itself (RFC 6455 §5.5.1): a status code and a reason,
/// masked with a fresh random key toward the upstream (the gateway is its client), unmasked
/// toward the client.
enum WebSocketCloseFrame {
    /// The frame's bytes. The reason is cut to fit a control frame's 125 bytes (at a character).
    static func encode(code: WebSocketErrorCode, reason: String, masked: Bool, allocator: ByteBufferAllocator) -> ByteBuffer {
        var reasonBytes = Array(reason.utf8)
        while reasonBytes.count > 123 || String(validating: reasonBytes, as: UTF8.self) == nil { reasonBytes.removeLast() }
        var payload = allocator.buffer(capacity: 2 + reasonBytes.count)
        payload.write(webSocketErrorCode: code)
        payload.writeBytes(reasonBytes)
        var frame = allocator.buffer(capacity: 6 + payload.readableBytes)
        frame.writeInteger(0x80 | WebSocketFrameHeader.close)
        frame.writeInteger(UInt8(payload.readableBytes) | (masked ? 0x80 : 0))
        if masked {
            let key = WebSocketMaskingKey.random()
            frame.writeBytes(key)
            payload.webSocketMask(key)
        }
        frame.writeBuffer(&payload)
        return frame
    }
}
