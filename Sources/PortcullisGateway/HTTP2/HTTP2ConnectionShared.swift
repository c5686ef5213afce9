import NIOCore
import NIOHTTP1

/// What the streams of one HTTP/2 client connection share: the node's context, the upstream pool
/// of the connection's event loop, the client, the streams' deadlines, and the per-connection caches the HTTP/1.1 path
/// keeps in its handler (the route table read last, the last response counter). Streams run on
/// their connection's event loop, so this is confined to it.
final class HTTP2ConnectionShared {
    let gateway: GatewayContext
    let pool: UpstreamPool
    let client: HeaderRewriter.ClientInfo
    let admission: Admission
    /// What `limits.max_connections` bounds; a WebSocket over HTTP/2 counts as a connection.
    let connections: ConnectionCount
    /// The streams' deadlines, behind one scheduled check.
    let deadlines: HTTP2StreamDeadlines
    /// The minimum request-body rate, applied to each stream's body (nil: off).
    let bodyRate: RequestBodyRate.Limit?
    /// How long a stream's response may wait for the client's window (`limits.response_write_timeout`).
    let responseWriteTimeout: TimeAmount
    /// The event loop's connections the overload guard may cut short; joined from `start()` until `stop()`.
    private let shedding: OverloadSheddingSet?
    /// Streams open on the connection (swift-nio-http2's count, through its stream delegate).
    private var openStreams = 0
    /// Closes the connection after `idleCutoff` without an open stream (`start(channel:)`).
    private var idleTimer: DeadlineTimer?
    private let idleCutoff: TimeAmount
    private var routeTableCache: CachedRouteTable?
    var responseCounter: ResponseCounterCache?
    /// The connection's channel and frame guard (its view of the client's windows), from
    /// `start` until `stop`, and what the overload guard saw of the client's progress.
    private var channel: (any Channel)?
    private var frameGuard: HTTP2FrameGuard?
    private var progress: ClientProgress?

    init(gateway: GatewayContext, pool: UpstreamPool, client: HeaderRewriter.ClientInfo, connections: ConnectionCount,
         limits: ServerLimits, eventLoop: any EventLoop, shedding: OverloadSheddingSet? = nil) {
        self.deadlines = HTTP2StreamDeadlines(eventLoop: eventLoop)
        self.bodyRate = RequestBodyRate.Limit(limits)
        self.responseWriteTimeout = TimeAmount(limits.responseWriteTimeout)
        self.idleCutoff = TimeAmount(limits.idleTimeout) * 2
        self.gateway = gateway
        self.connections = connections
        self.pool = pool
        self.client = client
        self.admission = Admission(gateway: gateway, client: client)
        self.shedding = shedding
    }

    /// The connection's pipeline is built: the overload guard may cut its streams short until
    /// `stop()`, and the connection is closed once it has had no open stream for twice
    /// `limits.idle_timeout`. swift-nio-http2's connection manager closes an idle connection
    /// gracefully at `idle_timeout` (GOAWAY, a PING, and the last GOAWAY once the PING is
    /// answered), but its idle timer starts only at `channelActive` — which a manager added
    /// after ALPN or the preface detector never sees — or when a stream closes, and it waits for
    /// the PING's answer without end: a client that sent only the preface, or never answers the
    /// PING, would keep its connection and its `max_connections` slot for good.
    func start(channel: any Channel, frameGuard: HTTP2FrameGuard) {
        self.channel = channel
        self.frameGuard = frameGuard
        shedding?.add(self)
        // Strong captures; `stop()` (at the channel's close) breaks the cycle.
        idleTimer = DeadlineTimer(eventLoop: channel.eventLoop) { channel.close(promise: nil) }
        if openStreams == 0 { idleTimer?.set(after: idleCutoff) }
    }

    /// A stream opened.
    func streamOpened() {
        openStreams += 1
        if openStreams == 1 { idleTimer?.cancel() }
    }

    /// A stream closed.
    func streamClosed() {
        openStreams -= 1
        if openStreams == 0 { idleTimer?.set(after: idleCutoff) }
    }

    /// The connection closed: no deadline is kept, and the overload guard lets go of it.
    func stop() {
        channel = nil
        frameGuard = nil
        deadlines.stop()
        idleTimer?.stop()
        idleTimer = nil
        shedding?.remove(self)
    }

    /// A stream reset for a malformed request head (RFC 9113 §8.1.1) before anything read it:
    /// logged and counted as the HTTP/1.1 listener's parser refusals are (method and path `-`,
    /// 400, `malformed_request`, route `_unmatched`), though the client got RST_STREAM
    /// PROTOCOL_ERROR rather than a 400.
    func recordMalformedStream() {
        var log = RequestLog(requestID: RequestID.generate(), method: "-", target: "-", start: .now())
        log.client = admission.client.requestAddress(HTTPHeaders())
        log.status = Int(ErrorResponse.malformedRequest.status.code)
        log.reason = "malformed_request"
        gateway.record(log, metrics: gateway.unmatchedRoute, upstreamTime: nil, now: .now(), counter: &responseCounter)
    }

    /// The routes in force, read without the lock while no reload happened.
    func routeTable() -> RouteTable {
        gateway.routeTable(cached: &routeTableCache)
    }
}

extension HTTP2ConnectionShared: OverloadShedding {
    /// Resets every stream whose response has waited on the client for `waitedFor` or more, as
    /// its response-write deadline would (armed `responseWriteTimeout` after the wait began) —
    /// except that a stream waits behind the connection, not on its client's windows, while
    /// those windows are open (`HTTP2FrameGuard.peerWindowsOpen`): nothing of it is held by flow
    /// control, so its bytes queue for the socket behind the other streams'. For such a stream
    /// the wait counts, as an HTTP/1.1 connection's does (`ConnectionTimeoutHandler`), from
    /// when the guard last saw the client take what the gateway held for it (`ClientProgress`):
    /// here the socket's unsent bytes and what the waiting streams hold back, so that a client
    /// reading one stream cannot keep others held for less than it reads.
    func shedStalledResponses(waitedFor: TimeAmount, now: NIODeadline) -> Int {
        let waiting = deadlines.owners(armed: .responseWrite)
        guard !waiting.isEmpty, let channel, var reading = ClientProgress.reading(of: channel) else {
            progress = nil
            return deadlines.expire(.responseWrite, waitedFor: waitedFor, timeout: responseWriteTimeout, now: now)
        }
        reading.held += UInt64(waiting.reduce(0) { $0 + ($1.responseWait?.heldBytes ?? 0) })
        var seen = progress ?? ClientProgress(reading, at: now)
        seen.observe(reading, at: now)
        progress = seen
        let frameGuard = self.frameGuard
        return deadlines.expire(.responseWrite, waitedFor: waitedFor, timeout: responseWriteTimeout, now: now) { owner in
            guard let stream = owner.responseWait?.stream, frameGuard?.peerWindowsOpen(on: stream) == true else { return nil }
            return seen.progressedAt
        }
    }
}
