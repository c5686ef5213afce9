import Foundation
import PortcullisTestSupport

/// wrk in the background.
final class Wrk: Sendable {
    struct Result {
        var requests = 0
        var non2xx = 0
        var requestsPerSecond = 0.0
    }

    let process: ManagedProcess

    private init(process: ManagedProcess) {
        self.process = process
    }

    static func start(port: Int, path: String, token: String, seconds: Int, connections: Int) -> Wrk {
        let process = try! ManagedProcess(executable: "wrk", arguments: [
            "-t1", "-c\(connections)", "-d\(seconds)s", "-H", "Authorization: Bearer \(token)", "http://127.0.0.1:\(port)\(path)",
        ])
        return Wrk(process: process)
    }

    func wait() -> Result {
        while process.isRunning { usleep(50_000) }
        var result = Result()
        for line in process.output.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if line.contains("requests in"), let count = Int(fields.first ?? "") { result.requests = count }
            if line.contains("Non-2xx"), let count = Int(fields.last ?? "") { result.non2xx = count }
            if line.hasPrefix("Requests/sec:"), let rate = Double(fields.last ?? "") { result.requestsPerSecond = rate }
        }
        return result
    }
}
