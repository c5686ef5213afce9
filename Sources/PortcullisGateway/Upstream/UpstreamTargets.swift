import PortcullisConfig
import NIOCore
import Prometheus
import Synchronization

/// One upstream address of a route, with its ejection state shared by every event loop.
final class UpstreamTarget: Sendable {
    let address: HostPort
    /// `address` as text, for the access log (formatted once, not per request).
    let label: String
    /// Uptime nanoseconds until which the target is skipped; 0 when healthy.
    private let ejectedUntil = Atomic<UInt64>(0)
    /// Counts each time the target goes from healthy to ejected.
    private let ejections: Counter?

    init(address: HostPort, ejections: Counter? = nil) {
        self.address = address
        label = address.description
        self.ejections = ejections
    }

    func isEjected(now: NIODeadline) -> Bool {
        ejectedUntil.load(ordering: .relaxed) > now.uptimeNanoseconds
    }

    func eject(for duration: Duration, now: NIODeadline) {
        let nanos = UInt64(max(0, duration.components.seconds)) * 1_000_000_000 + UInt64(max(0, duration.components.attoseconds / 1_000_000_000))
        let previous = ejectedUntil.exchange(now.uptimeNanoseconds + nanos, ordering: .relaxed)
        // A failure while already ejected (the retry tried it anyway) extends the ejection; it is no new one.
        if previous <= now.uptimeNanoseconds { ejections?.increment() }
    }

    func markHealthy() {
        if ejectedUntil.load(ordering: .relaxed) != 0 {
            ejectedUntil.store(0, ordering: .relaxed)
        }
    }
}

/// Round-robin over a route's targets, skipping ejected ones. Lock-free: one atomic counter.
final class UpstreamTargetSelector: Sendable {
    let targets: [UpstreamTarget]
    private let next = Atomic<Int>(0)

    init(addresses: [HostPort], ejections: Counter? = nil) {
        targets = addresses.map { UpstreamTarget(address: $0, ejections: ejections) }
    }

    /// How many targets are ejected at `now`.
    func ejectedCount(now: NIODeadline) -> Int {
        targets.count(where: { $0.isEjected(now: now) })
    }

    /// The next healthy target after round-robin, excluding `excluding`; when every target is
    /// ejected, the one whose ejection ends first is tried rather than failing without trying.
    func pick(now: NIODeadline, excluding: UpstreamTarget? = nil) -> UpstreamTarget? {
        let count = targets.count
        let start = next.wrappingAdd(1, ordering: .relaxed).oldValue & Int.max
        for offset in 0..<count {
            let candidate = targets[(start &+ offset) % count]
            if candidate !== excluding, !candidate.isEjected(now: now) {
                return candidate
            }
        }
        if excluding == nil { return targets[start % count] }
        return targets.first { $0 !== excluding }
    }
}
