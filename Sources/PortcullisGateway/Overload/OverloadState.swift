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
