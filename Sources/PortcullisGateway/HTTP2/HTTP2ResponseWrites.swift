import NIOCore

/// Bounds how many writes of a response's body wait on an HTTP/2 stream. swift-nio-http2 makes a
/// stream unwritable by the bytes waiting on it (8 KiB), not by the writes, and each write costs
/// far more than a byte: an upstream sending 1-byte DATA frames to a client that keeps its window
/// shut made each wait as a write of its own (what that cost: docs/benchmarks.md, "Slow streams
/// cut, small writes joined"). swift-nio-http2 has no setting for it, so the stream handler keeps
/// this count itself.
///
/// A stream's first few small bodies (a typical response's only one) are written as they come.
/// After them, small bodies are held and copied into one buffer, written at the end of the
/// upstream's read with a promise; while that write has not completed (the client's window is
/// shut) further bodies join the held buffer, so at most one such write waits. A stream holding
/// `heldLimit` bytes is as unwritable (`holdsTooMuch`): the upstream is no longer read. Large
/// bodies are written as they come while nothing is held. Pure bookkeeping; the handler writes.
struct HTTP2ResponseWrites {
    /// A body smaller than this is small.
    static let smallBody = 1024
    /// Small bodies written as they come before the rest are held.
    static let directSmallBodies = 4
    /// Held bytes past which the stream counts as unwritable.
    static let heldLimit = 8192

    private var held: ByteBuffer?
    private var smallBodies = 0
    /// A write of held bytes has not completed.
    private(set) var heldWriteWaits = false

    /// `body`, to write now; nil when it was held (copied: a slice would keep the whole of the
    /// upstream's read alive).
    mutating func take(_ body: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer? {
        if held == nil {
            if body.readableBytes >= Self.smallBody { return body }
            if smallBodies < Self.directSmallBodies {
                smallBodies += 1
                return body
            }
        }
        var body = body
        if held == nil { held = allocator.buffer(capacity: max(body.readableBytes, 512)) }
        held!.writeBuffer(&body)
        return nil
    }

    /// The held bytes to write, when any are held and no write of them waits; the caller calls
    /// `heldWritten()` once that write completes.
    mutating func heldToWrite() -> ByteBuffer? {
        guard !heldWriteWaits, let buffer = held, buffer.readableBytes > 0 else { return nil }
        held = nil
        heldWriteWaits = true
        return buffer
    }

    mutating func heldWritten() {
        heldWriteWaits = false
    }

    /// Whatever is held, to write before the response's end (or drop with the stream).
    mutating func drain() -> ByteBuffer? {
        defer { held = nil }
        return held.flatMap { $0.readableBytes > 0 ? $0 : nil }
    }

    /// The bytes held.
    var heldBytes: Int { held?.readableBytes ?? 0 }

    var holds: Bool { heldBytes > 0 }

    /// Enough is held that the stream must be taken for unwritable.
    var holdsTooMuch: Bool { heldBytes >= Self.heldLimit }
}
