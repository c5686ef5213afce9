/// The frames swift-nio-http2 holds for one connection's streams and has not yet delivered to
/// them, and the bound on their number.
///
/// A stream whose reads the gateway holds (backpressure: the other side cannot take more) gets
/// its frames queued by swift-nio-http2, one object of about 180 bytes each, while flow control
/// counts only DATA bytes: a peer sending 1-byte DATA frames made a held stream cost about 12 MB
/// per 64 KiB window, and a connection's 100 streams over a gigabyte. This counts what the
/// connection's `HTTP2FrameGuard` passes on for each stream — DATA, HEADERS and WINDOW_UPDATE, the
/// frames swift-nio-http2 queues on a stream — against what the stream's `HTTP2FrameQueueMeter`
/// sees delivered. Over `limit` in all, the stream holding the most is reset with
/// ENHANCE_YOUR_CALM (its queue goes with it), until the connection is back under the limit.
///
/// The bound is per connection, not per stream: one stream of small gRPC messages (5 bytes
/// each, one DATA frame each when sent one at a time) may queue a whole window's worth —
/// 13 107 frames at 64 KiB — while its upstream stalls, so the default limit (16 384, about 3 MB)
/// lets one such stream wait out its stall, and a connection's queues together stay within the
/// bytes its stream windows allow anyway (100 × 64 KiB).
///
/// A stream is counted from the HEADERS that open it (either way: the guard sees them before a
/// stream channel exists) until its meter leaves the closed stream, or either side resets it. Only
/// HEADERS on a stream ID above any that side opened before open one: a peer's DATA in flight
/// when the gateway reset a stream is ignored by swift-nio-http2 and must not count again (it
/// would never be delivered; its trailers there end the connection, docs/configuration.md). Counts never go below zero. A stream without a
/// meter that would be reset — one swift-nio-http2 dropped without the guard seeing why — is
/// forgotten instead. One dictionary entry per open stream, found once per frame. Confined to the
/// connection's event loop.
final class HTTP2FrameQueues {
    /// How many frames a connection's streams may have queued in all, by default.
    static let defaultLimit = 16_384

    private struct Stream {
        var queued = 0
        /// Resets the stream; nil until its meter is in place.
        var meter: HTTP2FrameQueueMeter?
    }

    let limit: Int
    private var streams: [UInt32: Stream] = [:]
    /// Frames queued on all streams.
    private(set) var total = 0
    /// Whether the peer opens the odd streams (a client) or the even ones (an upstream, which may
    /// open none: the gateway refuses pushes).
    private let peerOpensOdd: Bool
    /// The highest stream IDs each side has opened.
    private var highestOpenedByPeer: UInt32 = 0
    private var highestOpenedByGateway: UInt32 = 0

    /// - Parameter peerOpensOdd: true on a client's connection, false on one to an upstream.
    init(limit: Int = HTTP2FrameQueues.defaultLimit, peerOpensOdd: Bool) {
        self.limit = limit
        self.peerOpensOdd = peerOpensOdd
    }

    /// How many streams are counted.
    var countedStreams: Int { streams.count }

    /// Frames queued on `stream` (0 when it is not counted).
    func queued(on stream: UInt32) -> Int { streams[stream]?.queued ?? 0 }

    /// A HEADERS frame on `stream`, either way: counted from now on, if it was not.
    func opened(_ stream: UInt32) {
        if streams[stream] == nil { streams[stream] = Stream() }
    }

    /// A frame the stream's channel will queue, passed on to swift-nio-http2: true when the
    /// connection is now over its limit (`shed()`). With `opening`, a stream not counted yet is
    /// counted from this frame (its HEADERS).
    func arrived(on stream: UInt32, opening: Bool = false) -> Bool {
        if let index = streams.index(forKey: stream) {
            streams.values[index].queued += 1
        } else if opening {
            streams[stream] = Stream(queued: 1)
        } else {
            return false
        }
        total += 1
        return total > limit
    }

    /// A frame the guard saw, either way, other than the peer's WINDOW_UPDATE on a stream (that
    /// one passes `HTTP2WindowUpdateBudget` first, then `arrived(on:)`): HEADERS open a stream, the
    /// peer's HEADERS and DATA arrive on it, RST_STREAM ends it. True when the connection is now
    /// over its limit.
    func track(_ header: HTTP2FrameScanner.Header, fromPeer: Bool) -> Bool {
        guard header.streamID != 0 else { return false }
        switch header.type {
        case HTTP2FrameScanner.headersType:
            let stream = header.streamID
            guard fromPeer else {
                if stream > highestOpenedByGateway {
                    highestOpenedByGateway = stream
                    opened(stream)
                }
                return false
            }
            let opening = (stream & 1 == 1) == peerOpensOdd && stream > highestOpenedByPeer
            if opening { highestOpenedByPeer = stream }
            return arrived(on: stream, opening: opening)
        case HTTP2FrameScanner.dataType:
            return fromPeer && arrived(on: header.streamID)
        case HTTP2FrameScanner.rstStreamType:
            closed(header.streamID)
        default:
            break
        }
        return false
    }

    /// The stream's meter saw one of those frames delivered.
    func delivered(on stream: UInt32) {
        guard let index = streams.index(forKey: stream), streams.values[index].queued > 0 else { return }
        streams.values[index].queued -= 1
        total -= 1
    }

    /// The stream's meter, which resets it when it holds the most.
    func attach(_ stream: UInt32, meter: HTTP2FrameQueueMeter) {
        streams[stream, default: Stream()].meter = meter
    }

    /// The stream is over: reset, or its channel closed (its queue dropped).
    func closed(_ stream: UInt32) {
        if let removed = streams.removeValue(forKey: stream) { total -= removed.queued }
    }

    /// While over the limit, the stream holding the most is no longer counted and is reset.
    /// Returns how many streams were reset.
    @discardableResult
    func shed() -> Int {
        var reset = 0
        while total > limit, let largest = streams.max(by: { $0.value.queued < $1.value.queued }) {
            closed(largest.key)
            if let meter = largest.value.meter {
                meter.reset()
                reset += 1
            }
        }
        return reset
    }
}
