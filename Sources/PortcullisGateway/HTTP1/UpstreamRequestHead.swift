import NIOHTTP1

/// A request head on its way to an upstream, as `HeaderRewriter.upstreamRequest` built it; always
/// sent as HTTP/1.1 by `HTTP1Writer`.
struct UpstreamRequestHead {
    var method: HTTPMethod
    var uri: String
    var fields: [(name: String, value: String)]
    /// The body goes in chunks (the rewriter then declared `Transfer-Encoding: chunked`); else
    /// `Content-Length` frames it, or there is none.
    var isChunked: Bool
    /// The exchange ends the connection (`Connection: close` is sent, and it is not pooled again):
    /// see `HeaderRewriter.closesUpstreamConnection`.
    var closesConnection = false
}
