import NIOHTTP2

/// Tells a malformed message on one HTTP/2 stream from an error of the whole connection.
///
/// swift-nio-http2 answers a malformed request or response (RFC 9113 §8.1.1: a header block that
/// breaks HTTP/2's field rules, a body that disagrees with its `content-length`, trailers that do
/// not end the stream) with RST_STREAM PROTOCOL_ERROR on that stream alone, as the RFC asks, and
/// then reports the error on the connection's pipeline exactly as it reports a connection error
/// after its GOAWAY, with nothing to tell the two apart but the error's type. These are the types
/// its header-block and content-length validation raise, and they are raised only for a stream.
/// An error of any other type, including those of a future swift-nio-http2 version, counts as a
/// connection error, so the connection is closed: the safe side.
///
/// A peer cannot use this to keep a connection busy with bad streams: swift-nio-http2 closes a
/// connection (ENHANCE_YOUR_CALM) after 200 stream errors in 30 s, or 200 in its lifetime
/// ("glitches").
enum HTTP2MalformedMessage {
    /// Whether `error` is one stream's malformed message, already answered with RST_STREAM.
    static func isMalformed(_ error: any Error) -> Bool {
        switch error {
        case is NIOHTTP2Errors.InvalidHTTP2HeaderFieldName,
             is NIOHTTP2Errors.InvalidHTTP2HeaderFieldValue,
             is NIOHTTP2Errors.ForbiddenHeaderField,
             is NIOHTTP2Errors.InvalidPseudoHeaders,
             is NIOHTTP2Errors.InvalidPseudoHeaderValue,
             is NIOHTTP2Errors.DuplicatePseudoHeader,
             is NIOHTTP2Errors.PseudoHeaderAfterRegularHeader,
             is NIOHTTP2Errors.UnknownPseudoHeader,
             is NIOHTTP2Errors.UnsupportedPseudoHeader,
             is NIOHTTP2Errors.EmptyPathHeader,
             is NIOHTTP2Errors.TrailersWithoutEndStream,
             is NIOHTTP2Errors.ContentLengthViolated,
             is NIOHTTP2Errors.ContentLengthHeadersMismatch,
             is NIOHTTP2Errors.ContentLengthHeaderNegative,
             is NIOHTTP2Errors.ContentLengthHeaderMalformedValue:
            true
        default:
            false
        }
    }

    /// Whether `error` is a malformed *head* (or, for a field name or value, trailers): one that a
    /// request gets before any handler read it, so nothing else logs it. A body that disagrees
    /// with its `content-length`, or trailers that do not end the stream, break a request that
    /// was already admitted, whose own line says how it ended.
    static func isMalformedHead(_ error: any Error) -> Bool {
        switch error {
        case is NIOHTTP2Errors.ContentLengthViolated, is NIOHTTP2Errors.TrailersWithoutEndStream: false
        default: isMalformed(error)
        }
    }
}
