import NIOCore

/// Whether the node is overloaded, from its resident memory against its limit: over at the
/// limit, and no longer once it is back under nine tenths of it, so that a node hovering at its
/// limit does not switch with every reading. Pure.
struct OverloadState: Equatable {
    /// The resident memory, in bytes, at which the node is overloaded.
    let limit: Int
    private(set) var isOverloaded = false

    /// Below this the node stops being overloaded.
    var recovery: Int { limit / 10 * 9 }

    init(limit: Int) {
        self.limit = limit
    }

    /// How long a response may wait on its client before the guard cuts it, at `resident`:
    /// `timeout` up to the limit, shrinking linearly to nothing at a quarter over it — memory
    /// that grows fast (benchmarks.md, "Memory overload") would otherwise overshoot the limit by
    /// what it grows in `timeout`.
    func waitAllowed(_ timeout: TimeAmount, resident: Int) -> TimeAmount {
        let over = Double(resident - limit) / Double(limit)
        guard over > 0 else { return timeout }
        let share = max(0, 1 - over / 0.25)
        return .milliseconds(Int64((Double(timeout.nanoseconds) / 1e6 * share).rounded()))
    }

    enum Change: Equatable {
        case entered
        case left
    }

    /// Takes a reading; says whether it changed the state.
    mutating func observe(resident: Int) -> Change? {
        if !isOverloaded, resident >= limit {
            isOverloaded = true
            return .entered
        }
        if isOverloaded, resident < recovery {
            isOverloaded = false
            return .left
        }
        return nil
    }
}
