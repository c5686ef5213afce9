import NIOCore
import NIOHTTP1

/// An upstream's response head as `UpstreamResponseParser` framed it. The fields stay byte ranges
/// of the received head: the client's head is copied from them (`HeaderRewriter.clientResponse`,
/// `HTTP1Writer`) rather than rebuilt through strings, which cost a tenth of the CPU per request
/// (docs/benchmarks.md).
struct UpstreamResponseHead {
    /// A field's name and value (without surrounding whitespace) as offsets into `bytes`.
    struct Field {
        let name: Range<Int>
        let value: Range<Int>
    }

    let version: HTTPVersion
    let status: HTTPResponseStatus
    /// The head as received; `fields` index its readable bytes.
    let bytes: ByteBuffer
    /// Every field but `Content-Length`, in order. All were validated by the parser (token names,
    /// no control characters in values), so they can be written out as they are.
    let fields: [Field]
    /// The length that framed the body, as one plain number however the upstream wrote it; nil
    /// when `Transfer-Encoding` or the connection closing framed it (a `Content-Length` beside
    /// `Transfer-Encoding` is dropped: the client must frame the body as it was read).
    let contentLength: Int?

    /// Calls `body` with the head's bytes, which `fields` index.
    func withBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        try bytes.withUnsafeReadableBytes(body)
    }
}
