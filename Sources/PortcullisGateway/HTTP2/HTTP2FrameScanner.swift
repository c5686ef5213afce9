import NIOCore

/// Finds frame headers in one direction of an HTTP/2 byte stream, whatever the reads' or writes'
/// boundaries: after an optional preface, a 9-byte header (RFC 9113 §4.1) and the payload it
/// announces, again and again. Only headers are read; payloads are skipped. Public for the
/// `http2-frames` fuzz target.
public struct HTTP2FrameScanner {
    static let dataType: UInt8 = 0x0
    static let headersType: UInt8 = 0x1
    static let rstStreamType: UInt8 = 0x3
    static let settingsType: UInt8 = 0x4
    static let goAwayType: UInt8 = 0x7
    static let windowUpdateType: UInt8 = 0x8

    /// A frame header: the payload's length, the frame's type and flags, its stream.
    public struct Header: Equatable, Sendable {
        public var length: Int
        public var type: UInt8
        public var flags: UInt8
        public var streamID: UInt32

        public init(length: Int, type: UInt8, flags: UInt8, streamID: UInt32) {
            self.length = length
            self.type = type
            self.flags = flags
            self.streamID = streamID
        }
    }

    private var prefaceLeft: Int
    /// The bytes of a header read so far (at most 9), most significant first.
    private var partial: UInt128 = 0
    private var partialCount = 0
    /// Payload bytes of the current frame not yet seen.
    public private(set) var payloadLeft = 0
    /// Bytes read of a header not yet complete (0 between headers).
    public var headerBytesRead: Int { partialCount }

    /// - Parameter prefaceBytes: bytes to skip before the first frame (24 where the stream begins
    ///   with the client's connection preface).
    public init(prefaceBytes: Int) {
        self.prefaceLeft = prefaceBytes
    }

    /// Reads from `index` in `buffer`, moving it on: past preface and payload bytes, and through
    /// a header, which it returns once complete (the index then at its payload). Nil when the
    /// bytes read so far complete no header.
    public mutating func scan(_ buffer: ByteBuffer, from index: inout Int) -> Header? {
        let end = buffer.writerIndex
        if prefaceLeft > 0 {
            let skip = min(prefaceLeft, end - index)
            prefaceLeft -= skip
            index += skip
            return nil
        }
        if payloadLeft > 0 {
            let skip = min(payloadLeft, end - index)
            payloadLeft -= skip
            index += skip
            return nil
        }
        if partialCount == 0, end - index >= 9 {
            // The whole header in this buffer: two reads rather than nine.
            partial = UInt128(buffer.getInteger(at: index, as: UInt64.self)!) << 8 | UInt128(buffer.getInteger(at: index + 8, as: UInt8.self)!)
            partialCount = 9
            index += 9
        }
        while index < end, partialCount < 9 {
            partial = partial << 8 | UInt128(buffer.getInteger(at: index, as: UInt8.self)!)
            partialCount += 1
            index += 1
        }
        guard partialCount == 9 else { return nil }
        let header = Header(length: Int(partial >> 48 & 0xFF_FFFF), type: UInt8(partial >> 40 & 0xFF), flags: UInt8(partial >> 32 & 0xFF),
                            streamID: UInt32(partial & 0x7FFF_FFFF))
        partial = 0
        partialCount = 0
        payloadLeft = header.length
        return header
    }

    /// `count` payload bytes were consumed by the caller (at most `payloadLeft`).
    mutating func skipPayload(_ count: Int) {
        payloadLeft -= count
    }
}
