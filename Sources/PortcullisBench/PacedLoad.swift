import Foundation
import PortcullisTestSupport
import Synchronization

/// Requests at a fixed rate over keep-alive connections, counting 429s. Stops by itself after
/// `seconds`, or earlier on `cancel()`.
final class PacedLoad: Sendable {
    struct Result {
        var sent = 0
        var rejected = 0
        var errors = 0
    }

    private let done = Mutex<Result?>(nil)
    private let partial = Mutex<[Result]>([])
    private let cancelled = Atomic<Bool>(false)

    /// - Parameters:
    ///   - threads: senders, each on its own thread and connection, sharing `rate` between them.
    ///   - keyHeader: when given, each request carries this header with the next of `values` in
    ///     turn (a rate-limit policy keyed by the header then sees `values.count` active keys).
    static func start(port: Int, path: String, token: String, rate: Double, seconds: Int, threads: Int = 4,
                      keyHeader: (name: String, values: [String])? = nil) -> PacedLoad {
        let load = PacedLoad()
        for thread in 0..<threads {
            Thread.detachNewThread {
                var result = Result()
                let interval = Double(threads) / rate
                let start = Date().timeIntervalSince1970 + Double(thread) * interval / Double(threads)
                var client = try? HTTPTestClient(port: port, timeout: 5)
                var next = start
                var sequence = thread
                while next < start + Double(seconds), !load.cancelled.load(ordering: .relaxed) {
                    let wait = next - Date().timeIntervalSince1970
                    if wait > 0 { usleep(UInt32(wait * 1_000_000)) }
                    var headers = [("Authorization", "Bearer \(token)")]
                    if let keyHeader, !keyHeader.values.isEmpty {
                        headers.append((keyHeader.name, keyHeader.values[sequence % keyHeader.values.count]))
                        sequence += threads
                    }
                    do {
                        if client == nil { client = try HTTPTestClient(port: port, timeout: 5) }
                        let status = try client!.request("GET", path, headers: headers).status
                        result.sent += 1
                        if status == 429 { result.rejected += 1 } else if status != 200 { result.errors += 1 }
                    } catch {
                        result.errors += 1
                        client = nil
                    }
                    next += interval
                }
                let finished = load.partial.withLock { parts -> Int in
                    parts.append(result)
                    return parts.count
                }
                if finished == threads {
                    let total = load.partial.withLock { parts in
                        parts.reduce(into: Result()) { $0.sent += $1.sent; $0.rejected += $1.rejected; $0.errors += $1.errors }
                    }
                    load.done.withLock { $0 = total }
                }
            }
        }
        return load
    }

    /// Ends the load at the next request; `wait()` then returns what was sent so far.
    func cancel() {
        cancelled.store(true, ordering: .relaxed)
    }

    func wait() -> Result {
        while true {
            if let result = done.withLock({ $0 }) { return result }
            usleep(50_000)
        }
    }
}
