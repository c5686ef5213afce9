import PortcullisJOSE
import Synchronization

/// Runs the key-set loader of the configuration in force: a reload starts the new one's refresh
/// loop and cancels the old one's, so remote issuers are refreshed on the schedule the file in
/// force gives them.
final class KeySetLoaderRunner: Sendable {
    private let running = Mutex<(task: Task<Void, Never>, loader: KeySetLoader)?>(nil)

    /// The loader whose refresh loop runs (the configuration in force's).
    var current: KeySetLoader? { running.withLock { $0?.loader } }

    /// Starts `loader`'s refresh loop in place of the previous one.
    func start(_ loader: KeySetLoader) {
        let next = Task { await loader.run() }
        running.withLock { current in
            current?.task.cancel()
            current = (next, loader)
        }
    }

    func stop() {
        running.withLock { current in
            current?.task.cancel()
            current = nil
        }
    }
}
