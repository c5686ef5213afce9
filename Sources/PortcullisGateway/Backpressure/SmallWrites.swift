import NIOCore

/// Bounds how many small writes wait on one channel. NIO makes a channel unwritable by the bytes
/// waiting on it (64 KiB), not by the writes, and each waiting write costs an entry, a buffer and
/// often the whole read it was sliced from: a peer that paces 1-byte pieces toward a side that has
/// stopped reading made each wait as a write of its own, a hundred bytes or more of the
/// gateway's memory per byte held (what that cost: docs/benchmarks.md, "Small writes joined on
/// every relay"). NIO has no setting for it, so the writer keeps this count itself.
///
/// Writes go out as they come, so a healthy peer sees no delay. Every
/// `writesPerCheck`-th small write is *watched*: written with a promise, whose completion says the
/// socket took it. While a watched write has not completed, the peer is behind, and what follows
/// is held and copied into one buffer (a slice would keep the whole read alive); when the watched
/// write completes, the held buffer goes as the next watched write. At most `writesPerCheck`
/// small writes and one joined buffer wait, whatever the peer does. Holding `heldLimit` bytes
/// makes the writer count as unwritable, so the side feeding it is no longer read. Large writes
/// go as they come while nothing is held, a watched write waiting or not: their bytes, not their
/// count, are what costs, and NIO's water marks bound those. A peer that keeps up sees no delay
/// (a watched write is taken at the flush that ends the read it came in); small writes past the
/// fourth of one read are copied into one write.
///
/// Pure bookkeeping: the owner writes, makes the watched write's promise and calls
/// `watchedWriteCompleted()` from it.
struct SmallWrites {
    /// A write smaller than this is small.
    static let smallWrite = 1024
    /// One small write in this many is watched.
    static let writesPerCheck = 4
    /// Held bytes past which the writer counts as unwritable.
    static let heldLimit = 8192

    /// What to do with the bytes handed to `take`.
    enum Decision {
        /// Write them now; with a promise that calls `watchedWriteCompleted()` when `watched`.
        case write(ByteBuffer, watched: Bool)
        /// They were copied into the held buffer, which goes when the watched write completes.
        case held
    }

    private var held: ByteBuffer?
    private var smallSinceWatched = 0
    /// A watched write has not completed.
    private(set) var watchedWriteWaits = false

    mutating func take(_ bytes: ByteBuffer, allocator: ByteBufferAllocator) -> Decision {
        if held == nil, bytes.readableBytes >= Self.smallWrite { return .write(bytes, watched: false) }
        if !watchedWriteWaits, held == nil {
            smallSinceWatched += 1
            guard smallSinceWatched == Self.writesPerCheck else { return .write(bytes, watched: false) }
            smallSinceWatched = 0
            watchedWriteWaits = true
            return .write(bytes, watched: true)
        }
        var bytes = bytes
        if held == nil { held = allocator.buffer(capacity: max(bytes.readableBytes, 512)) }
        held!.writeBuffer(&bytes)
        return .held
    }

    /// What a watched write's completion leaves the owner to do.
    struct Completion {
        /// The bytes held meanwhile, to write now as the next watched write.
        var next: ByteBuffer?
        /// Holding had stopped the side feeding this channel (`holdsTooMuch`): it may be read again.
        var resumesFeed: Bool
    }

    /// The watched write completed.
    mutating func watchedWriteCompleted() -> Completion {
        let resumesFeed = holdsTooMuch
        guard let buffer = held, buffer.readableBytes > 0 else {
            held = nil
            watchedWriteWaits = false
            return Completion(next: nil, resumesFeed: resumesFeed)
        }
        held = nil
        return Completion(next: buffer, resumesFeed: resumesFeed)
    }

    /// Whatever is held, to write before anything else goes to this channel (a response's or
    /// request's end, a frame of the gateway's own). The watched write, if any, still waits.
    mutating func drain() -> ByteBuffer? {
        defer { held = nil }
        return held.flatMap { $0.readableBytes > 0 ? $0 : nil }
    }

    /// The bytes held.
    var heldBytes: Int { held?.readableBytes ?? 0 }

    /// Enough is held that the writer must be taken for unwritable.
    var holdsTooMuch: Bool { heldBytes >= Self.heldLimit }
}
