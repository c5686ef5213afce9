import Synchronization

/// Set while the node is overloaded (`MemoryGuard`): new connections are closed and new requests
/// answered 503. Read on every request and connection, one relaxed atomic load.
final class OverloadFlag: Sendable {
    private let value = Atomic<Bool>(false)

    init() {}

    var isSet: Bool { value.load(ordering: .relaxed) }

    func set(_ overloaded: Bool) {
        value.store(overloaded, ordering: .relaxed)
    }
}
