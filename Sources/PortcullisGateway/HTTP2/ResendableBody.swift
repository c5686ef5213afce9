import NIOCore

/// The request body an upstream stream was sent so far, kept so that the request can go again on
/// another stream if the upstream refuses this one unprocessed (`HTTP2StreamRefusal`), up to
/// `limit` bytes: past it, or once the response began, nothing is kept and the request cannot be
/// sent again. Kept as a copy in one buffer of at most `limit` bytes: the parts as they went may
/// be slices of larger buffers, and kept they would hold on to those until the response head,
/// for every stream to every HTTP/2 upstream. The copy is what a second try costs each request
/// with a body; gRPC messages are mostly far smaller.
struct ResendableBody {
    /// Body bytes past which the request is no longer kept for a second try.
    static let limit = 16_384

    /// What was sent, in order; nil once the request cannot be sent again.
    private(set) var kept: ByteBuffer? = nil
    private var open = true

    /// Whether the request can still be sent again.
    var canResend: Bool { open }

    /// `part` went to the upstream stream.
    mutating func sent(_ part: ByteBuffer) {
        guard open else { return }
        guard (kept?.readableBytes ?? 0) + part.readableBytes <= Self.limit else { return release() }
        if kept == nil { kept = ByteBufferAllocator().buffer(capacity: part.readableBytes) }
        kept!.writeImmutableBuffer(part)
    }

    /// Nothing more is kept (the response began: a request cannot be sent twice then).
    mutating func release() {
        open = false
        kept = nil
    }
}
