import NIOCore

/// The request body an upstream stream was sent so far, kept so that the request can go again on
/// another stream if the upstream refuses this one unprocessed (`HTTP2StreamRefusal`), up to
/// `limit` bytes: past it, or once the response began, nothing is kept and the request cannot be
/// sent again. A part is kept as it went, not copied, unless it is a slice of a buffer more than
/// twice its size (a small body read beside other streams' frames): that one is copied, so that a
/// kept stream holds on to at most about twice `limit` until its response head, not a read
/// buffer per byte.
struct ResendableBody {
    /// Body bytes past which the request is no longer kept for a second try: a stream window.
    static let limit = 65_536

    /// What was sent, in order; nil once the request cannot be sent again.
    private(set) var parts: [ByteBuffer]? = []
    private var bytes = 0

    /// `part` went to the upstream stream.
    mutating func sent(_ part: ByteBuffer) {
        guard parts != nil else { return }
        bytes += part.readableBytes
        guard bytes <= Self.limit else { return parts = nil }
        if part.storageCapacity > 2 * part.readableBytes {
            var copy = ByteBufferAllocator().buffer(capacity: part.readableBytes)
            copy.writeImmutableBuffer(part)
            parts!.append(copy)
        } else {
            parts!.append(part)
        }
    }

    /// Nothing more is kept (the response began: a request cannot be sent twice then).
    mutating func release() {
        parts = nil
    }
}
