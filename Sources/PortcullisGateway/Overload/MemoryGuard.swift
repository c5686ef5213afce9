import Logging
import NIOCore

/// Keeps the node out of the out-of-memory killer's way (`overload:`; docs/configuration.md,
/// "Overload"). Four times a second it reads the resident set (`NodeMemory`); at
/// `overload.memory_limit` the node is overloaded until it is back under nine tenths of it
/// (`OverloadState`). While overloaded:
/// - `OverloadFlag` is set: new connections are closed at once and new requests answered
///   503 `overloaded` (gRPC: `UNAVAILABLE`);
/// - at every reading, every response that has waited on its client for
///   `overload.response_write_timeout` is cut, as if `limits.response_write_timeout` had passed:
///   what a client does not take is what an attacker makes a gateway hold. Above the limit that
///   time shrinks, to nothing at a quarter over it (`OverloadState.waitAllowed`);
/// - at most once a second the allocator gives its free pages back (`NodeMemory.trim`), so
///   that what was cut or ended shows in the resident set.
/// What is already admitted and making progress goes on.
final class MemoryGuard: Sendable {
    static let interval: Duration = .milliseconds(250)
    static let trimInterval: Duration = .seconds(1)

    private let limit: Int?
    private let responseWriteTimeout: TimeAmount
    private let flag: OverloadFlag
    private let metrics: GatewayMetrics
    private let logger: Logger
    private let shed: @Sendable (TimeAmount) async -> Int
    private let trim: @Sendable () -> Void

    /// What one reading leaves for the next.
    struct Readings {
        var state: OverloadState?
        var lastTrim: ContinuousClock.Instant?
    }

    /// - Parameters:
    ///   - limit: the resident set at which the node is overloaded; nil: never (it is still
    ///     read for `portcullis_memory_resident_bytes`).
    ///   - shed: cuts, on every event loop, what has waited on its client for the given time;
    ///     returns how many connections and streams it cut.
    ///   - trim: gives the allocator's free pages back (`NodeMemory.trim`).
    init(limit: Int?, responseWriteTimeout: Duration, flag: OverloadFlag, metrics: GatewayMetrics, logger: Logger,
         shed: @escaping @Sendable (TimeAmount) async -> Int, trim: @escaping @Sendable () -> Void = NodeMemory.trim) {
        self.limit = limit
        self.responseWriteTimeout = TimeAmount(responseWriteTimeout)
        self.flag = flag
        self.metrics = metrics
        self.logger = logger
        self.shed = shed
        self.trim = trim
        metrics.memoryLimit.set(Int64(limit ?? 0))
    }

    /// Reads the resident set every `interval` until cancelled.
    func run() async {
        var readings = Readings(state: limit.map(OverloadState.init(limit:)))
        while !Task.isCancelled {
            await observe(resident: NodeMemory.resident(), now: .now, readings: &readings)
            try? await Task.sleep(for: Self.interval)
        }
    }

    /// One reading: the metrics, the flag and, while overloaded, the shedding and the trim.
    func observe(resident: Int, now: ContinuousClock.Instant, readings: inout Readings) async {
        metrics.memoryResident.set(Int64(resident))
        guard var state = readings.state else { return }
        switch state.observe(resident: resident) {
        case .entered:
            flag.set(true)
            metrics.overloaded.set(Int64(1))
            logger.warning("overloaded: resident memory reached overload.memory_limit; refusing new connections and requests (503), cutting responses their clients leave untaken for overload.response_write_timeout",
                           metadata: ["resident_bytes": "\(resident)", "memory_limit_bytes": "\(state.limit)"])
        case .left:
            flag.set(false)
            metrics.overloaded.set(Int64(0))
            logger.notice("no longer overloaded: resident memory back under nine tenths of overload.memory_limit",
                          metadata: ["resident_bytes": "\(resident)", "memory_limit_bytes": "\(state.limit)"])
        case nil:
            break
        }
        readings.state = state
        guard state.isOverloaded else { return }
        let cut = await shed(state.waitAllowed(responseWriteTimeout, resident: resident))
        if cut > 0 {
            metrics.overloadShed.increment(by: Int64(cut))
            logger.warning("overloaded: cut connections and streams whose clients left a response untaken for overload.response_write_timeout",
                           metadata: ["cut": "\(cut)", "resident_bytes": "\(resident)"])
        }
        if readings.lastTrim.map({ now - $0 >= Self.trimInterval }) ?? true {
            readings.lastTrim = now
            trim()
        }
    }
}
