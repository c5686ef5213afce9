import NIOCore
import NIOHPACK
import NIOHTTP1

/// Whether a header block the gateway sends fits in one HEADERS frame.
///
/// swift-nio-http2 sends a header block as one HEADERS frame, never with CONTINUATION frames, and
/// cannot encode one larger than the peer's SETTINGS_MAX_FRAME_SIZE; that failure is a connection
/// error, closing the connection with every other stream on it — to an upstream, other clients'
/// calls; to a client, its other streams. Huffman coding can make a block far larger than its
/// text (RFC 7541 Appendix B: up to 30 bits for a byte, and a byte that is not UTF-8 arrives as
/// U+FFFD, three bytes), so a client's 2 KB field could do it. A request block (to an upstream)
/// or response head (to a client) that might not fit is measured before it is sent, and fails
/// alone: the request with 431, the response with 502.
enum HTTP2HeaderBlockSize {
    /// SETTINGS_MAX_FRAME_SIZE's floor (RFC 9113 §4.2): every peer takes a frame this large.
    static let frameLimit = 16_384

    /// Whether `block`, encoded, certainly fits in one frame of `frameLimit` bytes.
    static func fitsOneFrame(_ block: HPACKHeaders) -> Bool {
        var worstCase = 0
        for (name, value, _) in block { worstCase += worstCaseSize(name, value) }
        // Under the limit by that count (every request of ordinary size) nothing more is done.
        return worstCase <= frameLimit || encodedSize(block) <= frameLimit
    }

    /// Whether a response head for a client certainly fits in one frame of `frameLimit` bytes.
    static func fitsOneFrame(_ fields: HTTPHeaders) -> Bool {
        var worstCase = 0
        for (name, value) in fields { worstCase += worstCaseSize(name, value) }
        return worstCase <= frameLimit || encodedSize(HPACKHeaders(httpHeaders: fields)) <= frameLimit
    }

    /// The most a field can take encoded: its bytes at 30 bits each, a representation byte and
    /// two lengths of up to 5 bytes (12 with a byte to spare).
    private static func worstCaseSize(_ name: String, _ value: String) -> Int {
        (name.utf8.count + value.utf8.count) * 30 / 8 + 12
    }

    /// The block's size encoded without a dynamic table — no smaller than what the connection's
    /// encoder writes, whose table only turns literals into indices — plus room for the table
    /// size update that may lead a block.
    static func encodedSize(_ block: HPACKHeaders) -> Int {
        var encoder = HPACKEncoder(allocator: ByteBufferAllocator(), maxDynamicTableSize: 0)
        var buffer = ByteBuffer()
        do {
            try encoder.encode(headers: block, to: &buffer)
        } catch {
            return .max
        }
        return buffer.readableBytes + 8
    }
}
