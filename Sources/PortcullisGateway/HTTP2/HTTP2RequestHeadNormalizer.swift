import NIOCore
import NIOHPACK
import NIOHTTP2

/// The HTTP/2-specific rules for a request's header block, applied before NIO's HTTP/2-to-HTTP/1
/// codec turns it into the head `Admission` reads:
/// - `:authority` and `Host` must name the same authority when both are present (RFC 9113
///   §8.3.1). The codec keeps `Host` and drops `:authority`, and the gateway routes by `Host`: a
///   request whose two disagree is malformed and its stream is reset (PROTOCOL_ERROR), so no
///   upstream sees an authority the route was not chosen by.
/// - An extended CONNECT's `:protocol` (RFC 8441), which the codec drops, is handed on as an
///   `HTTP2ExtendedConnect` event before the head.
/// - Several `cookie` fields are joined with `"; "` (RFC 9113 §8.2.3), because an HTTP/1.1
///   upstream must receive one `Cookie` field.
///
/// Field-name syntax, pseudo-fields and connection-specific fields are checked by swift-nio-http2
/// itself (header block validation). Only the first HEADERS frame of a stream is a request head;
/// trailers pass untouched.
final class HTTP2RequestHeadNormalizer: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = HTTP2Frame.FramePayload
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    private var sawHead = false
    private let onMalformed: () -> Void

    /// `onMalformed` runs (to count it) when a stream is reset for a malformed head.
    init(onMalformed: @escaping () -> Void = {}) {
        self.onMalformed = onMalformed
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !sawHead, case .headers(var block) = unwrapInboundIn(data) else {
            context.fireChannelRead(data)
            return
        }
        sawHead = true
        if let name = block.headers.first(name: ":protocol") {
            context.fireUserInboundEventTriggered(HTTP2ExtendedConnect(protocolName: name))
        }
        switch Self.normalize(block.headers) {
        case .unchanged:
            context.fireChannelRead(data)
        case .rewritten(let headers):
            block.headers = headers
            context.fireChannelRead(wrapInboundOut(.headers(block)))
        case .malformed:
            onMalformed()
            context.writeAndFlush(wrapOutboundOut(.rstStream(.protocolError)), promise: nil)
            context.close(promise: nil)
        }
    }

    enum Outcome: Equatable {
        case unchanged
        case rewritten(HPACKHeaders)
        case malformed
    }

    static func normalize(_ headers: HPACKHeaders) -> Outcome {
        var cookies = 0
        var hosts = 0
        for field in headers {
            if field.name == "cookie" { cookies += 1 } else if field.name == "host" { hosts += 1 }
        }
        if hosts > 0, let authority = headers.first(name: ":authority")?.lowercased() {
            for host in headers.values(forHeader: "host") where host.lowercased() != authority {
                return .malformed
            }
        }
        guard cookies > 1 else { return .unchanged }
        var rewritten = HPACKHeaders()
        rewritten.reserveCapacity(headers.count - cookies + 1)
        var joined: [String] = []
        for field in headers {
            if field.name == "cookie" { joined.append(field.value) } else { rewritten.add(name: field.name, value: field.value, indexing: field.indexable) }
        }
        rewritten.add(name: "cookie", value: joined.joined(separator: "; "))
        return .rewritten(rewritten)
    }
}
