import Synchronization

/// A value a SIGHUP reload replaces as a whole (a listener's TLS setup, the admin settings);
/// readers take the current one under a lock held only for the copy.
final class Reloadable<Value: Sendable>: Sendable {
    private let value: Mutex<Value>

    init(_ value: Value) {
        self.value = Mutex(value)
    }

    var current: Value { value.withLock { $0 } }

    func replace(_ new: Value) {
        value.withLock { $0 = new }
    }
}
