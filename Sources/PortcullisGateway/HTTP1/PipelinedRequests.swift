import NIOCore
import NIOHTTP1

/// What arrived of pipelined requests on an HTTP/1.1 connection before the response to the
/// request ahead of them (RFC 9112 §9.3.2: responses go in the order of the requests), and where
/// NIO's decoder refused bytes among them. The connection takes the next item only while it may
/// begin a request (`next(mayBeginRequest:)`). Owned by one connection's handler.
struct PipelinedRequests {
    enum Item {
        case part(HTTPServerRequestPart)
        /// Refused bytes where a request would begin: answered 400 in its turn.
        case malformedRequest
        /// Refused bytes in the body of the request queued before.
        case malformedBody

        /// Whether this begins a request, which waits until the one before it is answered.
        var beginsRequest: Bool {
            switch self {
            case .part(.head), .malformedRequest: true
            case .part, .malformedBody: false
            }
        }
    }

    private var items = CircularBuffer<Item>()

    var isEmpty: Bool { items.isEmpty }

    mutating func append(_ part: HTTPServerRequestPart) {
        items.append(.part(part))
    }

    /// The decoder refused bytes (it passes on nothing after them): they take their turn behind
    /// what is queued, as a request of their own after a complete one, else as the broken body of
    /// the last. False when nothing is queued; the caller places the refusal itself.
    mutating func decoderRefused() -> Bool {
        guard let last = items.last else { return false }
        if case .part(.end) = last { items.append(.malformedRequest) } else { items.append(.malformedBody) }
        return true
    }

    /// A refusal of bytes after the request being answered, whose whole request was read.
    mutating func appendMalformedRequest() {
        items.append(.malformedRequest)
    }

    /// The next item, unless it begins a request and the connection may not begin one now.
    mutating func next(mayBeginRequest: Bool) -> Item? {
        guard let first = items.first, mayBeginRequest || !first.beginsRequest else { return nil }
        return items.removeFirst()
    }

    /// Drops everything queued (the connection's last response is being written, or it closed).
    mutating func removeAll() {
        items.removeAll()
    }
}
