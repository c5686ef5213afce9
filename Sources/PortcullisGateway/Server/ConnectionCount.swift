import Prometheus
import Synchronization

/// What `limits.max_connections` bounds: the client connections open, and the WebSockets over
/// HTTP/2 and HTTP/2 requests to HTTP/1.1 upstreams whose streams are open — each holds an
/// upstream connection of its own, as an HTTP/1.1 client connection holds one at a time, and one
/// HTTP/2 connection can carry many. Shared by every event loop; one atomic add per connection,
/// WebSocket or such stream.
final class ConnectionCount: Sendable {
    private let open = Atomic<Int>(0)
    private let limit: Int
    private let gauge: Gauge

    init(limit: Int, gauge: Gauge) {
        self.limit = limit
        self.gauge = gauge
    }

    /// Counts one more, unless `limit` are open: then counts nothing and returns false.
    func acquire() -> Bool {
        let count = open.wrappingAdd(1, ordering: .relaxed).newValue
        guard count <= limit else {
            open.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        gauge.set(Int64(count))
        return true
    }

    /// One counted by `acquire` ended.
    func release() {
        gauge.set(Int64(open.wrappingSubtract(1, ordering: .relaxed).newValue))
    }

    var current: Int { open.load(ordering: .relaxed) }
}

/// One acquired `ConnectionCount` place, released once however many paths end it. Confined to
/// one event loop (its holder's); the count itself is atomic.
final class ConnectionSlot {
    private var count: ConnectionCount?

    /// A place already acquired from `count`.
    init(_ count: ConnectionCount) {
        self.count = count
    }

    func release() {
        count?.release()
        count = nil
    }
}
