import NIOCore
import NIOHTTP1
import NIOHTTP2

/// Builds an HTTP/2 client connection's pipeline with swift-nio-http2: flush coalescing
/// (`FlushCoalescingHandler`), the joining of a read's small DATA frames
/// (`HTTP2DataFrameJoiner`), the frame guard (`HTTP2FrameGuard`: the peer's HPACK table size
/// clamped, WINDOW_UPDATE floods and floods of frames on closed streams or of GOAWAY frames
/// closed, the streams' queued frames counted, rapid reset counted), the connection handler with
/// the gateway's SETTINGS, a connection manager, and per stream the queue's meter
/// (`HTTP2FrameQueueMeter`), the header-block rules, NIO's HTTP/2-to-HTTP/1 codec and
/// `HTTP2StreamHandler`.
///
/// Rapid reset (CVE-2023-44487) is the frame guard's to stop (`HTTP2PrematureResets`: more than
/// 200 streams reset by the client within a second of opening and before their response head,
/// in 30 s, close the connection with ENHANCE_YOUR_CALM). The other attacks on HTTP/2 servers
/// are swift-nio-http2's to stop, with its defaults: CONTINUATION floods (a header block spread
/// over more than a few CONTINUATION frames), SETTINGS/PING floods (more than 200 control frames
/// in 30 s), and connections that accumulate stream errors ("glitches"). Each connection error is
/// answered with GOAWAY and the connection closed (`HTTP2ConnectionErrorHandler`).
/// `HTTP2GatewayTests` performs each attack. A malformed request resets its own stream
/// (PROTOCOL_ERROR) and is counted with the streams `HTTP2HeaderBlocks` resets; the client's
/// other streams go on.
enum HTTP2Pipeline {
    static func configure(_ channel: any Channel, config: HTTP2Config, limits: ServerLimits, shared: HTTP2ConnectionShared) throws {
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: config.maxConcurrentStreams),
            HTTP2Setting(parameter: .maxHeaderListSize, value: limits.maxHeaderBytes),
            HTTP2Setting(parameter: .headerTableSize, value: config.headerTableSize),
            HTTP2Setting(parameter: .initialWindowSize, value: config.initialWindowSize),
        ]
        if config.extendedConnect { connection.initialSettings.append(HTTP2Setting(parameter: .enableConnectProtocol, value: 1)) }
        // A stream the gateway answers and resets before its request's end (a 401, 413 or 502 to an
        // upload) may still get the DATA the client had sent; swift-nio-http2 ignores it for the
        // last `maximumRecentlyResetStreams` streams reset (32 by default) and treats it as a
        // connection error beyond them, which closed a client uploading on 40 such streams with
        // all its others. A stream ID each, for the streams reset most lately.
        connection.maximumRecentlyResetStreams = 1024
        // The connection's window lets 16 streams send a full window each at once.
        connection.targetWindowSize = min(Int(Int32.max), config.initialWindowSize * 16)
        var stream = NIOHTTP2Handler.StreamConfiguration()
        stream.targetWindowSize = config.initialWindowSize
        // Rapid reset is counted by `HTTP2PrematureResets`, in the frame guard.
        stream.streamResetFrameRateLimit = .backstop

        // Idle: no open stream for limits.idle_timeout. On drain (SIGTERM) it sends GOAWAY and
        // lets open streams finish within limits.drain_timeout.
        let manager = NIOHTTP2ServerConnectionManagementHandler(
            eventLoop: channel.eventLoop,
            configuration: .init(maxIdleTime: TimeAmount(limits.idleTimeout), maxAge: nil,
                                 maxGraceTime: TimeAmount(limits.drainTimeout), keepalive: nil))
        let bound = NIOLoopBound(shared, eventLoop: channel.eventLoop)
        let malformed = shared.gateway.metrics.malformedHTTP2Streams
        let sync = channel.pipeline.syncOperations
        let connectionErrors = shared.gateway.metrics.http2ConnectionErrors
        let queueResets = shared.gateway.metrics.http2QueueResets
        let framesJoined = shared.gateway.metrics.http2DataFramesJoined
        // A window's worth of the smallest gRPC messages (5 bytes) on one stream stays under it.
        let frameGuard = HTTP2FrameGuard(role: .server, queueLimit: max(HTTP2FrameQueues.defaultLimit, config.initialWindowSize / 4))
        let queues = NIOLoopBound(frameGuard.queues, eventLoop: channel.eventLoop)
        try sync.addHandler(FlushCoalescingHandler())
        try sync.addHandler(HTTP2DataFrameJoiner(prefaceBytes: 24) { framesJoined.increment(by: Int64($0)) })
        try sync.addHandler(frameGuard)
        _ = try sync.configureHTTP2Pipeline(mode: .server, connectionConfiguration: connection, streamConfiguration: stream,
                                            streamDelegate: StreamCounting(manager: manager.http2StreamDelegate, shared: bound)) { streamChannel in
            streamChannel.eventLoop.makeCompletedFuture {
                try streamChannel.pipeline.syncOperations.addHandlers([
                    HTTP2FrameQueueMeter(queues: queues.value) { queueResets.increment() },
                    HTTP2HeaderBlocks(onMalformed: {
                        malformed.increment()
                        bound.value.recordMalformedStream()
                    }),
                    HTTP2FramePayloadToHTTP1ServerCodec(),
                    HTTP2StreamHandler(shared: bound.value),
                ])
            }
        }
        try sync.addHandler(HTTP2ClientTrustQuiescing())
        try sync.addHandler(manager)
        try sync.addHandler(HTTP2ConnectionErrorHandler(onMalformedStream: { error in
            malformed.increment()
            if HTTP2MalformedMessage.isMalformedHead(error) { bound.value.recordMalformedStream() }
        }) { _ in connectionErrors.increment() })
        // Last, once nothing above can throw: a connection whose pipeline failed is closed
        // without ever joining the overload guard's set.
        shared.start(channel: channel, frameGuard: frameGuard)
        channel.closeFuture.assumeIsolated().whenComplete { _ in shared.stop() }
    }
}

/// Tells the connection manager (its idle time) and `HTTP2ConnectionShared` (its own idle
/// backstop) of each stream opened and closed. Called by swift-nio-http2 on the connection's
/// event loop.
private struct StreamCounting: NIOHTTP2StreamDelegate {
    let manager: NIOHTTP2ServerConnectionManagementHandler.HTTP2StreamDelegate
    let shared: NIOLoopBound<HTTP2ConnectionShared>

    func streamCreated(_ id: HTTP2StreamID, channel: any Channel) {
        manager.streamCreated(id, channel: channel)
        shared.value.streamOpened()
    }

    func streamClosed(_ id: HTTP2StreamID, channel: any Channel) {
        manager.streamClosed(id, channel: channel)
        shared.value.streamClosed()
    }
}
