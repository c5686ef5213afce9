import NIOCore
import NIOHPACK
import NIOHTTP2

/// A stream's header blocks as HPACK sees them, both ways: the rules that need the HTTP/2 view
/// of a block, which NIO's HTTP/2-to-HTTP/1 codec (after this handler) does not keep.
///
/// Requests, before the codec turns the first block into the head `Admission` reads. What an
/// HTTP/1.1 upstream receives is written from that head, so every rule that keeps an HTTP/2
/// request from meaning something else in HTTP/1.1 is applied here; a request breaking one is
/// malformed (RFC 9113 §8.1.1) and its stream reset (PROTOCOL_ERROR) before it reaches anything:
/// - `:method` is a token (RFC 9110 §9.1) of at most `maxMethodBytes`, with no lower-case letter
///   (`isUpperCaseToken`); `:scheme` and `:path`
///   are present (the codec would otherwise fail the stream on its first read). `:path` holds
///   visible ASCII only, as an HTTP/1.1 request target must (RFC 9112 §3.2; the HTTP/1.1
///   listener's decoder refuses others): raw spaces or non-ASCII bytes in it, in the query too,
///   would reach an HTTP/1.1 upstream's request line as sent.
/// - The authority: `:authority` and `Host` name the same one when both are present (RFC 9113
///   §8.3.1); the codec keeps `Host` and drops `:authority`, and the gateway routes by `Host`, so
///   a request whose two disagree could be routed by one and served by the other. A request with
///   `Host` only (RFC 9113 allows it) gets `:authority` from it; one with neither is malformed.
/// - Field values hold no control characters but HTAB and neither start nor end with SP or HTAB
///   (RFC 9113 §8.2.1, RFC 9110 §5.5). swift-nio-http2 refuses NUL, CR and LF itself.
/// - `content-length` is one decimal number (several equal ones, as fields or a list, become one;
///   RFC 9110 §8.6); anything else (`+5`, `5, 6`) is malformed, never passed on.
/// - The body's framing: a request whose HEADERS frame does not end the stream and that declares
///   no length may carry DATA of any length. The codec states `transfer-encoding: chunked` for
///   such requests except GET, HEAD, DELETE and TRACE; for those this handler adds it, so their
///   DATA reaches an HTTP/1.1 upstream as a chunked body and never as bytes after the head, which
///   the upstream would read as a second request (request smuggling).
/// - A CONNECT without `:protocol` (a tunnel; RFC 9113 §8.5: `:authority` and no `:scheme` or
///   `:path`) is handed on as the authority-form head an HTTP/1.1 CONNECT has (`:path` the
///   authority), so that `Admission` refuses it as it refuses one over HTTP/1.1; the codec
///   cannot read a head without `:scheme` and `:path`.
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
        switch Self.normalize(block.headers, endStream: block.endStream) {
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

    /// The request head `headers` by the rules above; `endStream` is whether its HEADERS frame
    /// ended the stream.
    static func normalize(_ headers: HPACKHeaders, endStream: Bool = true) -> Outcome {
        var cookies = 0, hosts = 0, lengths = 0
        var method: String?, authority: String?, hasScheme = false, hasPath = false, hasProtocol = false
        var length: UInt64?
        for field in headers {
            let name = field.name
            if name.utf8.first == UInt8(ascii: ":") {
                switch name {
                case ":method": method = field.value
                case ":authority": authority = field.value
                case ":scheme": hasScheme = true
                case ":path":
                    hasPath = true
                    guard isValidTarget(field.value) else { return .malformed }
                case ":protocol": hasProtocol = true
                default: break
                }
                continue
            }
            guard isValidValue(field.value) else { return .malformed }
            // By length first: most names match none of these, and then only one compare runs.
            switch name.utf8.count {
            case 6 where name == "cookie": cookies += 1
            case 4 where name == "host": hosts += 1
            case 14 where name == "content-length":
                lengths += 1
                guard let declared = contentLength(field.value), length == nil || length == declared else { return .malformed }
                length = declared
            default: break
            }
        }
        guard let method, method.utf8.count <= Self.maxMethodBytes, HeaderName.isValid(method), Self.isUpperCaseToken(method) else { return .malformed }
        let tunnel = method == "CONNECT" && !hasProtocol
        if tunnel {
            guard authority != nil, !hasScheme, !hasPath else { return .malformed }
        } else {
            guard hasScheme, hasPath else { return .malformed }
        }
        let firstHost = hosts > 0 ? headers.first(name: "host") : nil
        if hosts > 0 {
            let expected = (authority ?? firstHost ?? "").lowercased()
            for host in headers.values(forHeader: "host") where host.lowercased() != expected {
                return .malformed
            }
        } else if authority == nil {
            return .malformed
        }
        let addAuthority = authority == nil
        let addChunked = !endStream && length == nil && !hasProtocol && Self.codecLeavesUnframed(method)
        let canonicalLength = length.map(String.init)
        let rewriteLength = lengths > 1 || (lengths == 1 && headers.first(name: "content-length") != canonicalLength)
        guard cookies > 1 || addAuthority || addChunked || rewriteLength || tunnel else { return .unchanged }
        var rewritten = HPACKHeaders()
        rewritten.reserveCapacity(headers.count + 2)
        var joined: [String] = []
        for field in headers {
            switch field.name {
            case "cookie" where cookies > 1: joined.append(field.value)
            case "content-length" where rewriteLength: continue
            case ":method" where addAuthority:
                rewritten.add(name: field.name, value: field.value, indexing: field.indexable)
                rewritten.add(name: ":authority", value: firstHost ?? "")
            case ":method" where tunnel:
                rewritten.add(name: field.name, value: field.value, indexing: field.indexable)
                rewritten.add(name: ":scheme", value: "http")
                rewritten.add(name: ":path", value: authority ?? "")
            default: rewritten.add(name: field.name, value: field.value, indexing: field.indexable)
            }
        }
        if cookies > 1 { rewritten.add(name: "cookie", value: joined.joined(separator: "; ")) }
        if rewriteLength, let canonicalLength { rewritten.add(name: "content-length", value: canonicalLength) }
        if addChunked { rewritten.add(name: "transfer-encoding", value: "chunked") }
        return .rewritten(rewritten)
    }

    /// The longest `:method` taken. No registered method is longer than 17 bytes, and the
    /// HTTP/1.1 listener's parser takes registered methods only; a method is logged, recorded in
    /// spans and sent upstream whole, so one of 16 KB made export batches collectors refuse.
    static let maxMethodBytes = 32

    /// Whether a method has no lower-case letter. Methods are case-sensitive (RFC 9110 §9.1), so
    /// `delete` is not `DELETE` to the router, whose routes list methods upper case — but many
    /// upstream frameworks (Werkzeug, Express) upper-case what they receive: a `delete` routed
    /// past a route that lists `DELETE` (with its authentication) to a route without a method list
    /// on the same prefix would be served there as a DELETE. The HTTP/1.1
    /// listener's parser takes registered, upper-case methods only; over HTTP/2 an upper-case
    /// token is taken, so extension methods pass.
    static func isUpperCaseToken(_ method: String) -> Bool {
        !method.utf8.contains { $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z") }
    }

    /// The methods whose bodies NIO's HTTP/2-to-HTTP/1 codec does not frame when no length is
    /// declared (it adds `transfer-encoding: chunked` for every other one).
    static func codecLeavesUnframed(_ method: String) -> Bool {
        switch method {
        case "GET", "HEAD", "DELETE", "TRACE": true
        default: false
        }
    }

    /// A `content-length` value as one number: decimal digits, or a list of equal ones.
    static func contentLength(_ value: String) -> UInt64? {
        var result: UInt64?
        for element in value.utf8.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
            let digits = element.drop { $0 == 0x20 || $0 == 0x09 }.reversed().drop { $0 == 0x20 || $0 == 0x09 }.reversed()
            guard !digits.isEmpty, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                  let number = UInt64(String(decoding: digits, as: UTF8.self)), result == nil || result == number else { return nil }
            result = number
        }
        return result
    }

    /// Visible ASCII (0x21 to 0x7E): a request target's bytes.
    static func isValidTarget(_ value: String) -> Bool {
        value.utf8.withContiguousStorageIfAvailable { bytes in
            !bytes.contains { $0 < 0x21 || $0 > 0x7E }
        } ?? !value.utf8.contains { $0 < 0x21 || $0 > 0x7E }
    }

    /// RFC 9110 §5.5 field-value bytes (visible ASCII, SP, HTAB, obs-text), without SP or HTAB at
    /// either end (RFC 9113 §8.2.1).
    static func isValidValue(_ value: String) -> Bool {
        let utf8 = value.utf8
        if let first = utf8.first, first == 0x20 || first == 0x09 { return false }
        if let last = utf8.last, last == 0x20 || last == 0x09 { return false }
        return utf8.withContiguousStorageIfAvailable { bytes in
            !bytes.contains { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }
        } ?? !utf8.contains { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }
    }
}
