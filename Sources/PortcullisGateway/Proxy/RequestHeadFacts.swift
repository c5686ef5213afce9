import NIOHTTP1

/// What the request path needs from a request's headers, found in one pass over them rather than
/// one `first(name:)` scan per question.
struct RequestHeadFacts {
    /// The first `X-Request-Id`.
    var requestID: String?
    /// The first `Content-Length`, when it parses (NIO's decoder already refused conflicting ones).
    var contentLength: Int?
    /// The `Transfer-Encoding` fields' codings.
    var transferCodings = TransferCodings()
    var hasTransferEncoding: Bool { transferCodings.present }
    /// Whether the last transfer coding of the last `Transfer-Encoding` field is `chunked` (RFC
    /// 9112 §6.3: otherwise a request's body cannot be framed, and it is a 400).
    var transferEncodingEndsChunked: Bool { transferCodings.lastFieldEndsChunked }
    /// Whether every transfer coding named is `chunked` (the gateway re-frames bodies; another
    /// coding it would pass on undeclared).
    var transferEncodingOnlyChunked: Bool { !transferCodings.otherThanChunked }
    /// `Expect: 100-continue`.
    var expectsContinue = false
    /// The first `Host`, and how many there were.
    var host: String?
    var hostCount = 0
    /// Whether some field name has a character other than a letter, a digit or `-`
    /// (`AmbiguousFieldName`, `RequestPolicy.UnderscoreHeaders`).
    var hasAmbiguousNames = false
    /// An `Upgrade` field names `websocket` (RFC 6455 §4.1), or the request is an HTTP/2
    /// extended CONNECT for `websocket` (`extendedConnect`).
    var upgradesToWebSocket = false
    /// The request has an `Upgrade` field, for any protocol: NIO's HTTP/1.1 decoder reads nothing
    /// more on a connection after an upgrade request, so its answer ends the connection.
    var hasUpgrade = false
    /// The request is an HTTP/2 extended CONNECT (RFC 8441) for `websocket`, seen as a GET: set by
    /// `HTTP2StreamHandler`, never from a field (an HTTP/2 request cannot carry `Upgrade`).
    var extendedConnect = false
    /// The first `traceparent` (W3C Trace Context), read only when tracing is on.
    var traceparent: String?
    /// The values of every method-override field (`X-HTTP-Method-Override`, `X-HTTP-Method`,
    /// `X-Method-Override`), in order: frameworks that honour one run the method it names instead
    /// of the request's — each its own field, first or last, or first element of a list.
    var methodOverrides: [String]?
    /// Whether some value ends with a space or a tab (`OptionalWhitespace`; NIO's decoder drops
    /// those at the start).
    var hasPaddedValues = false

    init(_ headers: HTTPHeaders) {
        for (name, value) in headers {
            if !hasPaddedValues, let last = value.utf8.last {
                hasPaddedValues = OptionalWhitespace.isSpace(last)
            }
            if !hasAmbiguousNames {
                hasAmbiguousNames = AmbiguousFieldName.isAmbiguous(name)
            }
            switch name.utf8.count {
            case 4 where HeaderNameSet.matches(name, "host"):
                hostCount += 1
                if host == nil { host = value }
            case 12 where requestID == nil && HeaderNameSet.matches(name, "x-request-id"):
                requestID = value
            case 14 where contentLength == nil && HeaderNameSet.matches(name, "content-length"):
                contentLength = Int(value)
            case 17 where HeaderNameSet.matches(name, "transfer-encoding"):
                transferCodings.add(value.utf8)
            case 22 where HeaderNameSet.matches(name, "x-http-method-override"),
                 13 where HeaderNameSet.matches(name, "x-http-method"),
                 17 where HeaderNameSet.matches(name, "x-method-override"):
                if methodOverrides == nil { methodOverrides = [] }
                methodOverrides?.append(value)
            case 7 where HeaderNameSet.matches(name, "upgrade"):
                hasUpgrade = true
                HeaderList.forEachElement(value.utf8) { protocolName in
                    if HeaderNameSet.equalsIgnoringASCIICase(protocolName, "websocket".utf8) { upgradesToWebSocket = true }
                }
            case 11 where traceparent == nil && HeaderNameSet.matches(name, "traceparent"):
                traceparent = value
            case 6 where HeaderNameSet.matches(name, "expect"):
                expectsContinue = expectsContinue || HeaderNameSet.matches(value, "100-continue")
            default:
                break
            }
        }
    }

    /// Whether a body follows the head.
    var hasBody: Bool { hasTransferEncoding || (contentLength ?? 0) > 0 }
}
