import NIOCore
import NIOHTTP2

/// Reads the upstream's SETTINGS and GOAWAY (swift-nio-http2 passes the root stream's frames on to
/// the connection's pipeline) into its `HTTP2UpstreamConnection`.
final class HTTP2UpstreamSettingsWatcher: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias InboundOut = HTTP2Frame

    /// Set once the connection is in the pool; what was read before that is kept for it.
    var connection: HTTP2UpstreamConnection? {
        didSet { apply() }
    }
    private var maxStreams: Int?
    private var goingAway = false
    /// The last stream the upstream's GOAWAY frames say it may process (the least, if several).
    private(set) var goAwayLastStreamID: HTTP2StreamID?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.payload {
        case .settings(.settings(let settings)):
            // SETTINGS change only what they name; a first SETTINGS without the limit means none.
            if let limit = settings.last(where: { $0.parameter == .maxConcurrentStreams }) {
                maxStreams = limit.value
            } else if maxStreams == nil {
                maxStreams = Int.max
            }
            apply()
        case .goAway(let lastStreamID, _, _):
            goingAway = true
            goAwayLastStreamID = min(lastStreamID, goAwayLastStreamID ?? lastStreamID)
            apply()
        default:
            break
        }
        context.fireChannelRead(data)
    }

    private func apply() {
        guard let connection else { return }
        if let maxStreams {
            connection.maxStreams = maxStreams
            connection.settingsSeen = true
        }
        if goingAway, !connection.goingAway { connection.upstreamGoingAway() }
    }
}
