import NIOCore

/// Joins the small DATA frames of one read of an HTTP/2 connection into one DATA frame per
/// stream, before `HTTP2FrameGuard` and swift-nio-http2 see them, on client connections and on
/// the gateway's connections to HTTP/2 upstreams.
///
/// swift-nio-http2 handles each DATA frame as an object of its own — parsed, flow-controlled,
/// delivered to its stream's channel and through the stream's handlers — at a cost per frame
/// whatever its size, so a peer sending a body as 1-byte frames within flow control made the
/// gateway spend many times its own CPU (docs/benchmarks.md, "Small DATA frames joined"). A read
/// of such frames reaches swift-nio-http2 here as one frame per stream (or per 16 384 bytes); what
/// is left per frame is this handler's reading of its header and copying of its bytes.
///
/// What is joined: DATA frames of up to `joinUpTo` bytes on a stream other than 0 whose header
/// and payload are both in the read, in runs of frames that follow one another. Frame boundaries
/// carry no meaning in HTTP/2 (RFC 9113 §8.1), nor does the order of different streams' DATA
/// frames; within a stream the order is kept, and a frame with END_STREAM is not moved ahead of
/// other streams' frames that came before it (the run is passed on first), nor is anything joined
/// after it. Flow control counts what it counted: a joined frame's payload is as long as the
/// frames' payloads were, padding included — where they were padded, so is it (RFC 9113 §6.1),
/// with at most 255 bytes of padding, else a second frame begins. Not joined, each ending a run
/// and passed on as it came: a frame with no data and no END_STREAM (swift-nio-http2 counts those,
/// and closes a connection sending two in a row: joined, they would escape that count), a padded
/// frame whose padding is not within its payload (for swift-nio-http2 to refuse), and any other
/// frame but an extension frame; extension frames inside a run are dropped here (the guard drops
/// every one: `HTTP2FrameGuard.isExtension`), so that they cannot break runs. A read without two
/// joinable frames in a row is passed on as it came, save for the extension frames a run of one
/// drops (its frame is then passed on rebuilt, as it was).
///
/// Written by hand: swift-nio-http2 has no hook before it builds a frame's object. Fuzzed on the
/// `http2-frames` target's reads, beside the guard: what it passes on, read frame by frame, must
/// carry each stream's bytes, flow-controlled lengths and ends as the input did, whatever the
/// reads' cuts. Event-loop confined.
final class HTTP2DataFrameJoiner: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// DATA frames whose payload is at most this long are joined; longer ones cost little per
    /// byte on their own.
    static let joinUpTo = 1024
    /// The longest frame joined: the least SETTINGS_MAX_FRAME_SIZE an endpoint may announce (RFC
    /// 9113 §6.5.2), and the gateway's, which it leaves at the default.
    static let maxFrameSize = 16_384

    /// The joined frame of one stream being built.
    private struct Part {
        var stream: UInt32
        var data: ByteBuffer
        /// The payload length flow control counts (the frames' payloads, padding included).
        var flowLength: Int
        var endStream: Bool
    }

    private static let endStreamFlag: UInt8 = 0x1
    private static let paddedFlag: UInt8 = 0x8

    private var scanner: HTTP2FrameScanner
    /// The current run's joined frames, in the order their streams first appear.
    private var parts: [Part] = []
    /// Per stream, its part still open to more bytes.
    private var openPart: [UInt32: Int] = [:]
    /// The DATA frames that went into `parts`.
    private var framesJoined = 0
    private let onJoined: (Int) -> Void

    /// - Parameters:
    ///   - prefaceBytes: 24 where the bytes begin with the client's connection preface.
    ///   - onJoined: told, for each run joined, how many frames fewer it became.
    init(prefaceBytes: Int, onJoined: @escaping (Int) -> Void = { _ in }) {
        self.scanner = HTTP2FrameScanner(prefaceBytes: prefaceBytes)
        self.onJoined = onJoined
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        let end = buffer.writerIndex
        // Where the bytes to pass on as they came begin.
        var passFrom = buffer.readerIndex
        var index = buffer.readerIndex
        var headerBegunEarlier = scanner.headerBytesRead > 0
        // A run's first joinable frame, kept where it is until a second one follows: its header's
        // offset and the frame. Nil once the run is being joined (`parts` not empty), or with no run.
        var first: (header: HTTP2FrameScanner.Header, data: DataRange, start: Int)?
        while index < end {
            guard let header = scanner.scan(buffer, from: &index) else { continue }
            // Not a frame of this read's alone if its header began in the last one.
            let whole = !headerBegunEarlier && end - index >= header.length
            headerBegunEarlier = false
            let headerStart = index - 9
            let inRun = first != nil || !parts.isEmpty
            let data = whole ? Self.joinableData(header, in: buffer, at: index) : nil
            if data != nil || (whole && inRun && HTTP2FrameGuard.isExtension(header.type)) {
                index += header.length
                scanner.skipPayload(header.length)
                if first == nil, parts.isEmpty, let data {
                    first = (header, data, headerStart)
                    continue
                }
                if let run = first {
                    // A second frame: what came before the run is passed on, the run joined from here.
                    if passFrom < run.start { context.fireChannelRead(wrapInboundOut(buffer.getSlice(at: passFrom, length: run.start - passFrom)!)) }
                    add(run.header, run.data, in: buffer, allocator: context.channel.allocator)
                    first = nil
                }
                if let data {
                    // A stream's end is not moved ahead of the other streams' frames before it.
                    if header.flags & Self.endStreamFlag != 0, let open = openPart[header.streamID], open != parts.count - 1 {
                        context.fireChannelRead(wrapInboundOut(takeJoined(allocator: context.channel.allocator)))
                    }
                    add(header, data, in: buffer, allocator: context.channel.allocator)
                }
                passFrom = index
                continue
            }
            // Any other frame ends the run, and goes on after it.
            first = nil
            if !parts.isEmpty { context.fireChannelRead(wrapInboundOut(takeJoined(allocator: context.channel.allocator))) }
        }
        if !parts.isEmpty { context.fireChannelRead(wrapInboundOut(takeJoined(allocator: context.channel.allocator))) }
        if passFrom < end {
            context.fireChannelRead(wrapInboundOut(passFrom == buffer.readerIndex ? buffer : buffer.getSlice(at: passFrom, length: end - passFrom)!))
        }
    }

    /// Where a DATA frame's data lies in the read, its padding (if any) left out.
    private struct DataRange {
        var at: Int
        var length: Int
    }

    /// A DATA frame's data if the frame can be joined — small, on a stream, its padding (if any)
    /// within its payload, with data or END_STREAM — and nil otherwise.
    private static func joinableData(_ header: HTTP2FrameScanner.Header, in buffer: ByteBuffer, at payload: Int) -> DataRange? {
        guard header.type == HTTP2FrameScanner.dataType, header.streamID != 0, header.length <= joinUpTo else { return nil }
        var data = DataRange(at: payload, length: header.length)
        if header.flags & paddedFlag != 0 {
            guard header.length > 0, let padLength = buffer.getInteger(at: payload, as: UInt8.self), Int(padLength) < header.length else { return nil }
            data.at += 1
            data.length -= 1 + Int(padLength)
        }
        return data.length > 0 || header.flags & endStreamFlag != 0 ? data : nil
    }

    /// Adds a joinable DATA frame, its data at `range` in `buffer`, to its stream's part.
    private func add(_ header: HTTP2FrameScanner.Header, _ range: DataRange, in buffer: ByteBuffer, allocator: ByteBufferAllocator) {
        let dataLength = range.length
        let data = buffer.getSlice(at: range.at, length: dataLength)!
        let ends = header.flags & Self.endStreamFlag != 0
        framesJoined += 1
        if let index = openPart[header.streamID] {
            let flowLength = parts[index].flowLength + header.length
            // Padding beyond what a frame carries (the pad-length byte and 255) needs a frame of its own.
            if flowLength <= Self.maxFrameSize, flowLength - (parts[index].data.readableBytes + dataLength) <= 256 {
                parts[index].data.writeImmutableBuffer(data)
                parts[index].flowLength = flowLength
                parts[index].endStream = ends
                if ends { openPart[header.streamID] = nil }
                return
            }
        }
        var copy = allocator.buffer(capacity: Swift.max(dataLength, 256))
        copy.writeImmutableBuffer(data)
        parts.append(Part(stream: header.streamID, data: copy, flowLength: header.length, endStream: ends))
        openPart[header.streamID] = ends ? nil : parts.count - 1
    }

    /// The run's joined frames, written out; the run is over.
    private func takeJoined(allocator: ByteBufferAllocator) -> ByteBuffer {
        var out = allocator.buffer(capacity: parts.reduce(0) { $0 + 9 + $1.flowLength })
        for part in parts {
            let padding = part.flowLength - part.data.readableBytes
            var flags: UInt8 = part.endStream ? Self.endStreamFlag : 0
            if padding > 0 { flags |= Self.paddedFlag }
            out.writeInteger(UInt8(part.flowLength >> 16))
            out.writeInteger(UInt16(part.flowLength & 0xFFFF))
            out.writeInteger(HTTP2FrameScanner.dataType)
            out.writeInteger(flags)
            out.writeInteger(part.stream)
            if padding > 0 { out.writeInteger(UInt8(padding - 1)) }
            out.writeImmutableBuffer(part.data)
            if padding > 1 { out.writeRepeatingByte(0, count: padding - 1) }
        }
        if framesJoined > parts.count { onJoined(framesJoined - parts.count) }
        framesJoined = 0
        parts.removeAll(keepingCapacity: true)
        openPart.removeAll(keepingCapacity: true)
        return out
    }
}
