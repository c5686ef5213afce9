import NIOHTTP1

/// A response head on its way to a client: fields passed on from an upstream's head (referenced,
/// not copied, until `HTTP1Writer` writes them) followed by the gateway's own fields.
struct ClientResponseHead {
    var version: HTTPVersion
    var status: HTTPResponseStatus
    /// Written as `Content-Length`. Neither `fields` nor the forwarded fields carry that field:
    /// the parser takes it out of upstream heads and route rules may not set it.
    var contentLength: Int?
    /// The upstream head whose fields at `forwardedFields` are passed on.
    var forwarded: UpstreamResponseHead?
    var forwardedFields: [Int] = []
    /// The gateway's fields, written after the forwarded ones.
    var fields: [(name: String, value: String)] = []

    init(version: HTTPVersion, status: HTTPResponseStatus, contentLength: Int?, fields: [(name: String, value: String)] = []) {
        self.version = version
        self.status = status
        self.contentLength = contentLength
        self.fields = fields
    }
}
