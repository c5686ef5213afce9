import NIOCore

/// Something whose pending writes the coalescer flushes.
protocol CoalescedFlushing: AnyObject {
    func flushNow()
}

/// Defers flushes to the end of the event loop's current tick, one per event loop.
///
/// NIO handles every ready socket of a tick, then runs the tasks queued during it. A flush
/// requested while handling a socket is made in that task phase, so the responses to all the
/// requests read in one tick leave in one burst, and so do the requests to upstreams. The peer on
/// the other end (client, backend) is then woken once per burst instead of once per write: on
/// loopback the waking is paid by the writer, and it was the largest cost the gateway adds in the
/// kernel. Writes are queued in order as before, so pipelined responses keep their order.
final class FlushCoalescer {
    private let eventLoop: any EventLoop
    private var pending: [any CoalescedFlushing] = []
    /// The array being flushed, kept to reuse its storage.
    private var spare: [any CoalescedFlushing] = []
    private var scheduled = false

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Flushes `target` at the end of this tick.
    func flush(_ target: any CoalescedFlushing) {
        pending.append(target)
        guard !scheduled else { return }
        scheduled = true
        eventLoop.assumeIsolated().execute { [self] in run() }
    }

    private func run() {
        scheduled = false
        swap(&pending, &spare)
        for target in spare { target.flushNow() }
        spare.removeAll(keepingCapacity: true)
    }
}
