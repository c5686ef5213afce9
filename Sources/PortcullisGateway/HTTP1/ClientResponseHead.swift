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
    var forwardedFields = FieldSelection()
    /// Written as `X-Request-Id` after the forwarded fields, when set. Held apart from `fields`
    /// so that a response with no gateway fields but this one needs no array (an allocation per
    /// response).
    var requestID: String?
    /// The gateway's fields, written after the forwarded ones and `requestID`.
    var fields: [(name: String, value: String)] = []

    init(version: HTTPVersion, status: HTTPResponseStatus, contentLength: Int?, fields: [(name: String, value: String)] = []) {
        self.version = version
        self.status = status
        self.contentLength = contentLength
        self.fields = fields
    }
}

/// Which fields of an upstream head are passed on, in ascending order. A bit per field for the
/// first 64 fields, so a typical response selects its fields without allocating; any beyond go in
/// a list.
struct FieldSelection {
    private var first64: UInt64 = 0
    private var beyond: [Int] = []

    /// Adds `index`; indices must be added in ascending order.
    mutating func insert(_ index: Int) {
        if index < 64 { first64 |= 1 << UInt64(index) } else { beyond.append(index) }
    }

    func forEach(_ body: (Int) -> Void) {
        var bits = first64
        while bits != 0 {
            body(bits.trailingZeroBitCount)
            bits &= bits - 1
        }
        for index in beyond { body(index) }
    }
}
