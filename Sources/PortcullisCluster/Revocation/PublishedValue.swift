import Foundation
import Synchronization

/// A value written rarely (a revocation change) and read on every request, from every event-loop
/// thread. Readers get it with one atomic load and a thread-local read — no lock, no reference
/// counting — because each thread keeps its own reference to the latest value it saw, and only
/// refreshes it (under the lock) when the version moved. Taking the lock on every request would
/// cost more than the revocation lookup itself (figures: docs/benchmarks.md).
final class PublishedValue<Value: AnyObject & Sendable>: @unchecked Sendable {
    // Why @unchecked Sendable is sound: `published` is only touched under its Mutex; `version` is
    // atomic; `key` is written once in init and read-only afterwards; each thread-local slot is
    // only ever read or replaced by the thread that owns it (pthread_getspecific/setspecific are
    // per thread), and the `Slot` it holds is immutable.
    //
    // Thread-local keys are a limited resource (PTHREAD_KEYS_MAX, 1024 on Linux); there is one
    // value per node process, and should a key not be available every read takes the lock.
    private final class Slot {
        let version: UInt64
        let value: Value
        init(version: UInt64, value: Value) {
            self.version = version
            self.value = value
        }
    }

    private let published: Mutex<(version: UInt64, value: Value)>
    private let version = Atomic<UInt64>(0)
    private let key: pthread_key_t?

    init(_ value: Value) {
        published = Mutex((0, value))
        var key = pthread_key_t()
        // The destructor releases a thread's slot when the thread exits.
        let created = pthread_key_create(&key) { raw in
            if let raw { Unmanaged<AnyObject>.fromOpaque(raw).release() }
        }
        self.key = created == 0 ? key : nil
    }

    deinit {
        // Slots of threads still alive are not reachable from here; a set lives as long as its
        // node, so they are at most one value per event-loop thread.
        if let key { pthread_key_delete(key) }
    }

    /// Calls `body` with the current value. `body` must not call `read` on the same instance:
    /// a refresh inside would release the slot the outer call is using.
    func read<Result>(_ body: (Value) -> Result) -> Result {
        guard let key else { return body(value) }
        let current = version.load(ordering: .acquiring)
        if let raw = pthread_getspecific(key) {
            let slot = Unmanaged<Slot>.fromOpaque(raw)
            let fresh = slot._withUnsafeGuaranteedRef { $0.version == current }
            if fresh {
                return slot._withUnsafeGuaranteedRef { body($0.value) }
            }
            slot.release()
        }
        let (latest, value) = published.withLock { ($0.version, $0.value) }
        let slot = Slot(version: latest, value: value)
        let retained = Unmanaged.passRetained(slot)
        if pthread_setspecific(key, retained.toOpaque()) != 0 { retained.release() }
        return body(value)
    }

    /// The current value (for writers and rare reads).
    var value: Value { published.withLock { $0.value } }

    /// Replaces the value; `transform` runs under the lock, so concurrent writers serialise.
    @discardableResult
    func update<Result>(_ transform: (Value) -> (Value, Result)) -> Result {
        published.withLock { current in
            let (next, result) = transform(current.value)
            current = (current.version + 1, next)
            version.store(current.version, ordering: .releasing)
            return result
        }
    }
}
