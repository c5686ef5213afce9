import PortcullisJOSE
import Synchronization

/// Runs the key-set loader of the configuration in force: a reload starts the new one's refresh
/// loop and cancels the old one's, so remote issuers are refreshed on the schedule the file in
/// force gives them.
final class KeySetLoaderRunner: Sendable {
    private let task = Mutex<Task<Void, Never>?>(nil)

    /// Starts `loader`'s refresh loop in place of the previous one.
    func start(_ loader: KeySetLoader) {
        let next = Task { await loader.run() }
        task.withLock { current in
            current?.cancel()
            current = next
        }
    }

    func stop() {
        task.withLock { current in
            current?.cancel()
            current = nil
        }
    }
}
