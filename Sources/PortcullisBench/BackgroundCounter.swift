import Synchronization

/// A count shared by concurrent tasks (writes that succeeded).
final class BackgroundCounter: Sendable {
    private let count = Atomic<Int>(0)
    func increment() { count.wrappingAdd(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}
