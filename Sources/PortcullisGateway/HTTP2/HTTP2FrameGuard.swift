import NIOCore
import NIOHTTP2

/// Reads one HTTP/2 connection's frames as bytes, between the socket (or TLS) and
/// `NIOHTTP2Handler`, against attacks swift-nio-http2 leaves open or counts too coarsely — from
/// a client, and from an upstream on the gateway's connections to it:
///
/// - **A huge HPACK table.** swift-nio-http2 gives its encoder whatever dynamic table the peer's
///   SETTINGS_HEADER_TABLE_SIZE allows, up to 4 GiB, and its encoder searches the whole table for
///   each field it sends: a peer announcing 4 GiB would make each header block the gateway sent
///   slower than the last, starving everything on the event loop, and keep every distinct value it
///   was sent. The value is clamped to `maxHeaderTableSize` before `NIOHTTP2Handler` reads it; RFC 7541
///   §4.2 lets an encoder use less than the decoder allows, and nghttp2's encoder keeps 4 KiB too.
/// - **WINDOW_UPDATE floods.** While the gateway holds a stream's reads (backpressure: the other
///   side cannot take more), swift-nio-http2 queues every frame that arrives for the stream, and
///   flow control bounds DATA only: a peer sending WINDOW_UPDATE frames on such a stream would
///   grow the gateway's memory without bound. Each stream's updates have a
///   budget earned by the DATA the gateway sent on it (`HTTP2WindowUpdateBudget`: by frames and
///   bytes, a frame the peer's window cut short by its bytes only — so the peer's windows are
///   followed here: its SETTINGS_INITIAL_WINDOW_SIZE, and each WINDOW_UPDATE's increment, read as
///   its payload passes); an update beyond it closes the connection with GOAWAY.
/// - **Extension frames.** swift-nio-http2 skips a frame of a type it does not know without
///   ever discarding the bytes it read past, while a frame remains incomplete: a peer sending
///   such frames with every write ending inside one would make the gateway keep every byte.
///   Frames above CONTINUATION are dropped here — RFC 9113 §5.5 lets a receiver ignore any it
///   does not use — and, so that one cut by a read's end can be dropped whole, a frame header the
///   read ended in is held until it is complete. Each costs the connection's frame budget
///   (below): a peer sending empty ones without end would keep a core busy for as long as its
///   connection lived.
/// - **Queues of small frames.** The same queue holds every DATA frame as an object of its own
///   while flow control counts bytes, so a held stream's window of 1-byte DATA frames cost about
///   180 times its size. The frames passed on for each stream are counted in the connection's
///   `HTTP2FrameQueues` (the streams' `HTTP2FrameQueueMeter`s count those delivered); over its
///   limit, the stream holding the most is reset.
/// - **Rapid reset, counted by what it costs.** On a client connection, a client's RST_STREAM
///   of a stream opened less than a second before, to which the gateway had not yet sent a
///   response head, counts toward `HTTP2PrematureResets`; over its limit the connection is
///   closed with GOAWAY.
/// - **Frames no stream accounts for.** WINDOW_UPDATE frames on the connection, WINDOW_UPDATE
///   and RST_STREAM frames on streams that are over, GOAWAY frames and extension frames have a connection-wide
///   budget earned by the DATA frames sent and the streams opened (`HTTP2ConnectionFrameBudget`);
///   beyond it the connection is closed with GOAWAY.
///
/// Written by hand: it needs frame boundaries in the byte stream, which swift-nio-http2 does not
/// expose before it has queued the frames. It looks only at the 9-byte frame headers (and the
/// payloads of SETTINGS and WINDOW_UPDATE frames), skipping every other payload. Its scanner is fuzzed (the
/// `http2-frames` target, docs/fuzzing.md), and `HTTP2FrameGuardTests` cut streams at random
/// points. Event-loop confined.
final class HTTP2FrameGuard: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    /// The largest HPACK dynamic table the gateway's encoder keeps for a peer.
    static let maxHeaderTableSize: UInt32 = 4096

    /// Why a connection was closed for its peer's WINDOW_UPDATE frames on a stream
    /// (`HTTP2WindowUpdateBudget`); `HTTP2ConnectionErrorHandler` answers it with GOAWAY.
    struct WindowUpdateFlood: HTTP2GuardConnectionError, CustomStringConvertible {
        var goAwayCode: HTTP2ErrorCode { .enhanceYourCalm }
        var description: String { "WINDOW_UPDATE flood: more WINDOW_UPDATE frames on a stream than the DATA sent on it allows" }
    }

    /// Which side sends the 24-byte connection preface (RFC 9113 §3.4) before its first frame.
    enum Role {
        /// The gateway serves this connection: the peer's bytes begin with the preface.
        case server
        /// The gateway is the client (to an upstream): its own bytes begin with the preface.
        case client
    }

    private var inbound: HTTP2FrameScanner
    private var outbound: HTTP2FrameScanner
    /// A SETTINGS payload being collected so its values can be read before it is passed on.
    private var heldSettings: ByteBuffer?
    private var streamBudgets = HTTP2WindowUpdateBudget()
    private var connectionBudget = HTTP2ConnectionFrameBudget()
    /// The connection is being closed for its peer's frames: nothing more of it is read.
    private var stopped = false
    /// A connection error found in this read (a flood, rapid reset): reported once the read is
    /// complete (`channelReadComplete`).
    private var pendingError: (any HTTP2GuardConnectionError)?
    /// The streams' queued frames passed the limit in this read.
    private var overQueued = false
    /// The start of a frame header the last read ended in, not yet passed on.
    private var heldHeader: ByteBuffer?
    /// The payload being read is an extension frame's, dropped.
    private var droppingPayload = false
    /// A WINDOW_UPDATE's increment being read, as its payload passes (it may be cut by a read's end).
    private var pendingIncrement: (stream: UInt32, value: UInt32, bytes: Int)?
    /// On a client connection: the client's premature resets (`HTTP2PrematureResets`).
    private var prematureResets: HTTP2PrematureResets?
    /// The frames queued on the connection's streams, shared with their meters.
    let queues: HTTP2FrameQueues

    /// - Parameter queueLimit: how many frames the connection's streams may have queued in all
    ///   (`queues`, to be given to each stream's `HTTP2FrameQueueMeter`).
    init(role: Role, queueLimit: Int = HTTP2FrameQueues.defaultLimit) {
        self.inbound = HTTP2FrameScanner(prefaceBytes: role == .server ? 24 : 0)
        self.outbound = HTTP2FrameScanner(prefaceBytes: role == .client ? 24 : 0)
        self.queues = HTTP2FrameQueues(limit: queueLimit, peerOpensOdd: role == .server)
        // An upstream's resets are its own business: a server resets what it has answered (RFC
        // 9113 §8.1) and what it will not serve, and is not a client the gateway defends against.
        self.prematureResets = role == .server ? HTTP2PrematureResets() : nil
    }

    /// Whether nothing the gateway has for `stream` waits on the peer's flow control: its window
    /// and the connection's are open (as the gateway's sending and the peer's WINDOW_UPDATE and
    /// SETTINGS frames left them), or the gateway's end of the stream has passed on toward the
    /// socket.
    func peerWindowsOpen(on stream: UInt32) -> Bool {
        guard let window = streamBudgets.window(of: stream) else { return true }
        return window > 0 && connectionBudget.window > 0
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !stopped else { return }
        // The time of this read, taken at its first HEADERS frame on a client connection: when
        // the streams it opens were opened (`HTTP2PrematureResets`).
        var readAt: NIODeadline?
        let buffer = unwrapInboundIn(data)
        let end = buffer.writerIndex
        // Where the bytes to pass on unchanged begin; nil while a SETTINGS payload is held.
        var passFrom: Int? = heldSettings == nil ? buffer.readerIndex : nil
        var index = buffer.readerIndex
        // The first header this read completes began in `heldHeader`.
        var headerBegunEarlier = inbound.headerBytesRead > 0
        while index < end {
            if var held = heldSettings {
                // A SETTINGS payload is collected whole, then passed on with its table size clamped.
                let take = min(inbound.payloadLeft, end - index)
                held.writeImmutableBuffer(buffer.getSlice(at: index, length: take)!)
                index += take
                inbound.skipPayload(take)
                if inbound.payloadLeft == 0 {
                    Self.clampHeaderTableSize(&held)
                    if let size = Self.initialWindowSize(in: held) { streamBudgets.peerInitialWindowChanged(to: size) }
                    heldSettings = nil
                    context.fireChannelRead(wrapInboundOut(held))
                    passFrom = index
                } else {
                    heldSettings = held
                }
                continue
            }
            if droppingPayload {
                let skip = min(inbound.payloadLeft, end - index)
                inbound.skipPayload(skip)
                index += skip
                droppingPayload = inbound.payloadLeft > 0
                passFrom = index
                continue
            }
            if var pending = pendingIncrement {
                // Read as it passes on, not held.
                let take = min(4 - pending.bytes, end - index)
                for offset in 0..<take { pending.value = pending.value << 8 | UInt32(buffer.getInteger(at: index + offset, as: UInt8.self)!) }
                pending.bytes += take
                index += take
                inbound.skipPayload(take)
                pendingIncrement = pending.bytes == 4 ? nil : pending
                if pending.bytes == 4 { windowIncremented(by: Int(pending.value & 0x7FFF_FFFF), on: pending.stream) }
                continue
            }
            guard let header = inbound.scan(buffer, from: &index) else { continue }
            let headerStart = headerBegunEarlier ? buffer.readerIndex : index - 9
            headerBegunEarlier = false
            if Self.isExtension(header.type) {
                if !connectionBudget.spend() { return stop(with: HTTP2ConnectionFrameBudget.Flood()) }
                // Dropped, header and payload: what came before it is passed on, its start held
                // from the last read goes.
                if let from = passFrom, from < headerStart {
                    context.fireChannelRead(wrapInboundOut(buffer.getSlice(at: from, length: headerStart - from)!))
                }
                heldHeader = nil
                droppingPayload = inbound.payloadLeft > 0
                passFrom = index
                continue
            }
            if let held = heldHeader {
                heldHeader = nil
                context.fireChannelRead(wrapInboundOut(held))
            }
            switch header.type {
            case HTTP2FrameScanner.windowUpdateType:
                switch streamBudgets.windowUpdate(on: header.streamID) {
                case .within:
                    if queues.arrived(on: header.streamID) { overQueued = true }
                case .beyond:
                    return stop(with: WindowUpdateFlood())
                case .untracked:
                    if !connectionBudget.spend() { return stop(with: HTTP2ConnectionFrameBudget.Flood()) }
                }
                // A payload of any other length is swift-nio-http2's to refuse (FRAME_SIZE_ERROR).
                if header.length == 4 { pendingIncrement = (header.streamID, 0, 0) }
            case HTTP2FrameScanner.rstStreamType:
                switch streamBudgets.reset(header.streamID) {
                case .tracked(let openedAt?):
                    if prematureResets?.noteReset(openedAt: openedAt, now: .now()) == true {
                        return stop(with: HTTP2PrematureResets.Flood())
                    }
                case .tracked(nil):
                    break
                case .untracked:
                    if !connectionBudget.spend() { return stop(with: HTTP2ConnectionFrameBudget.Flood()) }
                }
                queues.closed(header.streamID)
            case HTTP2FrameScanner.goAwayType:
                // swift-nio-http2 counts none, and a peer may repeat one whose last stream does not rise.
                if !connectionBudget.spend() { return stop(with: HTTP2ConnectionFrameBudget.Flood()) }
            // A SETTINGS frame larger than any frame the gateway accepts is passed on for
            // `NIOHTTP2Handler` to refuse, not collected.
            case HTTP2FrameScanner.settingsType where header.flags & 0x1 == 0 && header.length > 0 && header.length <= 16_384:
                // Pass on what came before the payload, and hold the payload.
                if let from = passFrom, from < index {
                    context.fireChannelRead(wrapInboundOut(buffer.getSlice(at: from, length: index - from)!))
                }
                passFrom = nil
                heldSettings = context.channel.allocator.buffer(capacity: header.length)
            default:
                if prematureResets != nil, readAt == nil, header.type == HTTP2FrameScanner.headersType { readAt = .now() }
                track(header, fromPeer: true, at: readAt)
                if queues.track(header, fromPeer: true) { overQueued = true }
            }
        }
        guard let from = passFrom else { return }
        // A header the read's end cut is held until its type shows whether it is passed on.
        let cut = end - min(inbound.headerBytesRead, end - buffer.readerIndex)
        if from < cut {
            context.fireChannelRead(wrapInboundOut(from == buffer.readerIndex && cut == end ? buffer : buffer.getSlice(at: from, length: cut - from)!))
        }
        if cut < end {
            let start = buffer.getSlice(at: cut, length: end - cut)!
            if heldHeader == nil { heldHeader = start } else { heldHeader!.writeImmutableBuffer(start) }
        }
    }

    /// Nothing more of this connection's is read; `error` is raised once the read is complete.
    private func stop(with error: any HTTP2GuardConnectionError) {
        stopped = true
        pendingError = error
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
        if let error = pendingError {
            // Reported after the read is complete: swift-nio-http2's connection manager holds
            // its flushes while a read is under way, which could keep the error handler's GOAWAY
            // from the client.
            pendingError = nil
            context.fireErrorCaught(error)
            return
        }
        // Only now are the frames of streams that read as they go delivered: what is left is held.
        if overQueued {
            overQueued = false
            queues.shed()
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .byteBuffer(let buffer):
            var index = buffer.readerIndex
            while index < buffer.writerIndex {
                guard let header = outbound.scan(buffer, from: &index) else { continue }
                track(header, fromPeer: false)
                // The gateway's own reset ends the stream, and costs the peer nothing.
                if header.type == HTTP2FrameScanner.rstStreamType { streamBudgets.reset(header.streamID) }
                _ = queues.track(header, fromPeer: false)
            }
        case .fileRegion(let region):
            // swift-nio-http2 writes a DATA frame's payload apart from its header, and a payload
            // may be a file region (the gateway writes none today).
            outbound.skipPayload(min(region.readableBytes, outbound.payloadLeft))
        }
        context.write(data, promise: promise)
    }

    /// Frame types above CONTINUATION (0x9): extensions (RFC 9113 §5.5) — ALTSVC and ORIGIN,
    /// which the gateway has no use for from either peer, PRIORITY_UPDATE, and types unknown.
    static func isExtension(_ type: UInt8) -> Bool { type > 0x9 }

    /// What a HEADERS or DATA frame changes in the budgets (a stream the peer opens is opened
    /// `at` that time, if given).
    private func track(_ header: HTTP2FrameScanner.Header, fromPeer: Bool, at now: NIODeadline? = nil) {
        guard header.streamID != 0 else { return }
        let endStream = header.flags & 0x1 != 0
        switch header.type {
        case HTTP2FrameScanner.headersType:
            streamBudgets.headers(on: header.streamID, endStream: endStream, fromPeer: fromPeer, at: now)
            connectionBudget.headers(on: header.streamID)
        case HTTP2FrameScanner.dataType where fromPeer:
            streamBudgets.dataReceived(on: header.streamID, endStream: endStream)
        case HTTP2FrameScanner.dataType:
            let connectionWindowSpent = connectionBudget.dataFrameSent(length: header.length)
            connectionBudget.earn(streamBudgets.dataSent(on: header.streamID, length: header.length, endStream: endStream,
                                                         connectionWindowSpent: connectionWindowSpent))
        default:
            break
        }
    }

    /// The peer's window grew by `increment`: the connection's (stream 0) or a stream's.
    private func windowIncremented(by increment: Int, on stream: UInt32) {
        if stream == 0 {
            connectionBudget.windowIncremented(by: increment)
        } else {
            streamBudgets.windowIncremented(by: increment, on: stream)
        }
    }

    /// The last SETTINGS_INITIAL_WINDOW_SIZE in a SETTINGS payload, if any.
    static func initialWindowSize(in payload: ByteBuffer) -> Int? {
        var size: Int?
        var offset = payload.readerIndex
        while offset + 6 <= payload.writerIndex {
            if payload.getInteger(at: offset, as: UInt16.self) == 4, let value = payload.getInteger(at: offset + 2, as: UInt32.self) {
                size = Int(value)
            }
            offset += 6
        }
        return size
    }

    /// Lowers a SETTINGS_HEADER_TABLE_SIZE above `maxHeaderTableSize` in a SETTINGS payload
    /// (6-byte entries: a 16-bit identifier, a 32-bit value).
    static func clampHeaderTableSize(_ payload: inout ByteBuffer) {
        var offset = payload.readerIndex
        while offset + 6 <= payload.writerIndex {
            if payload.getInteger(at: offset, as: UInt16.self) == 1,
               let value = payload.getInteger(at: offset + 2, as: UInt32.self), value > maxHeaderTableSize {
                payload.setInteger(maxHeaderTableSize, at: offset + 2)
            }
            offset += 6
        }
    }
}
