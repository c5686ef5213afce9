import NIOCore

/// Joins the request-body parts of one read of an HTTP/2 stream into one write to the upstream.
/// A read can deliver a whole window of DATA frames, 65 535 of them at one byte each, and each
/// passed on alone became a write waiting on the upstream connection (bounded by its bytes, not
/// its writes). Joined, a read costs one write, or one per `flushAt` bytes. The first part is kept
/// as it came (a request read whole is not copied); later ones are copied onto it.
struct HTTP2RequestBodyJoiner {
    /// Joined bytes past which a write goes before the read ends.
    static let flushAt = 16_384

    private var pending: ByteBuffer?

    /// Adds `part`; returns what is joined, to write now, once it reaches `flushAt`.
    mutating func add(_ part: ByteBuffer) -> ByteBuffer? {
        if pending == nil {
            pending = part
        } else {
            var part = part
            pending!.writeBuffer(&part)
        }
        guard pending!.readableBytes >= Self.flushAt else { return nil }
        return take()
    }

    /// What is joined, if anything (the read ended, or the request did).
    mutating func take() -> ByteBuffer? {
        defer { pending = nil }
        return pending
    }

    var isEmpty: Bool { pending == nil }
}
