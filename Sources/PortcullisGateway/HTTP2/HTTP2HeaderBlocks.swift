import NIOCore
import NIOHPACK
import NIOHTTP2

/// A stream's header blocks as HPACK sees them, both ways: the rules that need the HTTP/2 view
/// of a block, which NIO's HTTP/2-to-HTTP/1 codec (after this handler) does not keep.
///
/// Requests, before the codec turns the first block into the head `Admission` reads:
/// - `:authority` and `Host` must name the same authority when both are present (RFC 9113
///   §8.3.1). The codec keeps `Host` and drops `:authority`, and the gateway routes by `Host`: a
///   request whose two disagree is malformed and its stream is reset (PROTOCOL_ERROR), so no
///   upstream sees an authority the route was not chosen by.
/// - An extended CONNECT's `:protocol` (RFC 8441), which the codec drops, is handed on as an
///   `HTTP2ExtendedConnect` event before the head.
/// - Several `cookie` fields are joined with `"; "` (RFC 9113 §8.2.3), because an HTTP/1.1
///   upstream must receive one `Cookie` field.
///
/// Responses, after the codec made their HEADERS: `x-request-id` is sent as a literal without
/// indexing (RFC 7541 §6.2.2). Its value is new in every response, so indexing it only filled
/// the connection's HPACK table with values never sent again, evicting the fields that do repeat
/// and making the encoder search a full table for every field of every response (the largest
/// HPACK cost in HTTP/2 profiles; docs/benchmarks.md). The codec marks every field indexable, so
/// the choice is made here.
///
/// Field-name syntax, pseudo-fields and connection-specific fields are checked by swift-nio-http2
/// itself (header block validation). Only the first HEADERS frame of a stream is a request head;
/// trailers pass untouched.
final class HTTP2HeaderBlocks: ChannelDuplexHandler {
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

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .headers(var block) = unwrapOutboundIn(data), let unindexed = Self.unindexingRequestID(block.headers) else {
            return context.write(data, promise: promise)
        }
        block.headers = unindexed
        context.write(wrapOutboundOut(.headers(block)), promise: promise)
    }

    /// `headers` with `x-request-id` marked not to be indexed (moved to the end; the gateway
    /// sends exactly one); nil when it has none. The copy of the fields is the price of changing
    /// one: the frame still holds them.
    static func unindexingRequestID(_ headers: HPACKHeaders) -> HPACKHeaders? {
        guard let requestID = headers.first(name: "x-request-id") else { return nil }
        var unindexed = headers
        unindexed.replaceOrAdd(name: "x-request-id", value: requestID, indexing: .nonIndexable)
        return unindexed
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
