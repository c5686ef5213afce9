import NIOCore

/// The bytes of one response to a client, in the order they are to be written. The head is held
/// back until the first body part too large to copy, the response's end, or a flush; smaller body
/// parts are copied behind it. A small response then leaves in one write (one pass through the
/// pipeline and one buffer for the socket) instead of one write per part.
struct ResponseOutput {
    /// Body parts up to this size are copied behind the held-back head; larger ones go as they are.
    static let coalescedBodyLimit = 4096

    private var writer = HTTP1Writer()
    private var unsent: ByteBuffer?

    private var framing: HTTP1Writer.Framing { writer.framing }

    /// Starts a response; `bodyLength` (when known) sizes the head's buffer to take the body too.
    mutating func head(_ head: ClientResponseHead, framing: HTTP1Writer.Framing, bodyLength: Int?, allocator: ByteBufferAllocator) {
        let room = framing == .length ? min(bodyLength ?? 0, Self.coalescedBodyLimit) : 0
        unsent = writer.response(head, framing: framing, bodyRoom: room, allocator: allocator)
    }

    /// Adds a body part; `write` receives what must be written now, in order, and `promise` with
    /// the part's own bytes (it succeeds at once when nothing is written).
    mutating func body(_ part: ByteBuffer, promise: EventLoopPromise<Void>? = nil, allocator: ByteBufferAllocator,
                       write: (ByteBuffer, EventLoopPromise<Void>?) -> Void) {
        guard framing != .none else {
            promise?.succeed()
            return
        }
        if unsent != nil, part.readableBytes <= Self.coalescedBodyLimit {
            writer.append(part, to: &unsent!)
            promise?.succeed()
            return
        }
        if let held = takeUnsent() { write(held, nil) }
        if let prefix = writer.chunkPrefix(for: part, allocator: allocator) { write(prefix, nil) }
        write(part, promise)
        if let suffix = writer.chunkSuffix(for: part, allocator: allocator) { write(suffix, nil) }
    }

    /// The head is held back (nothing of the response written yet).
    var holdsHead: Bool { unsent != nil }

    /// The response's last bytes: whatever is held back with the end of the body appended, or the
    /// end alone; nil when nothing is left to write.
    mutating func end(allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard unsent != nil else { return writer.end(allocator: allocator) }
        writer.appendEnd(to: &unsent!)
        return takeUnsent()
    }

    /// The held-back bytes, which must be written before a flush.
    mutating func takeUnsent() -> ByteBuffer? {
        defer { unsent = nil }
        return unsent
    }
}
