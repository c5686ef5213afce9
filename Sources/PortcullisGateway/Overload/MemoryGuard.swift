import Logging
import NIOCore

/// Keeps the node out of the out-of-memory killer's way (`overload:`; docs/configuration.md,
/// "Overload"). Four times a second it reads the heap in use (`NodeMemory`); at
/// `overload.memory_limit` the node is overloaded until the heap is back under nine tenths of it
/// (`OverloadState`). While overloaded:
/// - `OverloadFlag` is set: new connections are closed at once and new requests answered
///   503 `overloaded` (gRPC: `UNAVAILABLE`);
/// - at every reading, every response that has waited on its client for
///   `overload.response_write_timeout` is cut, as if `limits.response_write_timeout` had passed:
///   what a client does not take is what an attacker makes a gateway hold.
/// What is already admitted and making progress goes on.
final class MemoryGuard: Sendable {
    static let interval: Duration = .milliseconds(250)

    private let limit: Int?
    private let responseWriteTimeout: TimeAmount
    private let flag: OverloadFlag
    private let metrics: GatewayMetrics
    private let logger: Logger
    private let shed: @Sendable (TimeAmount) async -> Int

    /// - Parameters:
    ///   - limit: the heap in use at which the node is overloaded; nil: never (the heap is still
    ///     read for `portcullis_memory_heap_in_use_bytes`).
    ///   - shed: cuts, on every event loop, what has waited on its client for the given time;
    ///     returns how many connections and streams it cut.
    init(limit: Int?, responseWriteTimeout: Duration, flag: OverloadFlag, metrics: GatewayMetrics, logger: Logger,
         shed: @escaping @Sendable (TimeAmount) async -> Int) {
        self.limit = limit
        self.responseWriteTimeout = TimeAmount(responseWriteTimeout)
        self.flag = flag
        self.metrics = metrics
        self.logger = logger
        self.shed = shed
        metrics.memoryLimit.set(Int64(limit ?? 0))
    }

    /// Reads the heap every `interval` until cancelled.
    func run() async {
        var state = limit.map(OverloadState.init(limit:))
        while !Task.isCancelled {
            await observe(heapInUse: NodeMemory.heapInUse(), state: &state)
            try? await Task.sleep(for: Self.interval)
        }
    }

    /// One reading: the metrics, the flag and, while overloaded, the shedding.
    func observe(heapInUse heap: Int, state: inout OverloadState?) async {
        metrics.memoryHeapInUse.set(Int64(heap))
        guard var current = state else { return }
        switch current.observe(heapInUse: heap) {
        case .entered:
            flag.set(true)
            metrics.overloaded.set(Int64(1))
            logger.warning("overloaded: heap in use reached overload.memory_limit; refusing new connections and requests (503), cutting responses their clients leave untaken for overload.response_write_timeout",
                           metadata: ["heap_in_use_bytes": "\(heap)", "memory_limit_bytes": "\(current.limit)"])
        case .left:
            flag.set(false)
            metrics.overloaded.set(Int64(0))
            logger.notice("no longer overloaded: heap in use back under nine tenths of overload.memory_limit",
                          metadata: ["heap_in_use_bytes": "\(heap)", "memory_limit_bytes": "\(current.limit)"])
        case nil:
            break
        }
        state = current
        guard current.isOverloaded else { return }
        let cut = await shed(responseWriteTimeout)
        if cut > 0 {
            metrics.overloadShed.increment(by: Int64(cut))
            logger.warning("overloaded: cut connections and streams whose clients left a response untaken for overload.response_write_timeout",
                           metadata: ["cut": "\(cut)", "heap_in_use_bytes": "\(heap)"])
        }
    }
}
