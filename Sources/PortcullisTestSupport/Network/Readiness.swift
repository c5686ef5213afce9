/// Waits for servers started by tests to accept work.
public enum Readiness {
    /// Returns once a TCP connection to `host:port` succeeds; throws after `timeout`.
    public static func waitForPort(host: String = "127.0.0.1", port: Int, timeout: Duration) async throws {
        try await poll(timeout: timeout, what: "\(host):\(port) to accept connections") {
            _ = try PlainSocket(host: host, port: port, timeoutMilliseconds: 250)
            return true
        }
    }

    /// Sends `GET path` over plain HTTP/1.1 until the response status equals `status`; throws after `timeout`
    /// with the last status or error seen.
    public static func waitForHTTP(host: String = "127.0.0.1", port: Int, path: String, status: Int = 200,
                                   timeout: Duration) async throws {
        try await poll(timeout: timeout, what: "GET http://\(host):\(port)\(path) to answer \(status)") {
            let socket = try PlainSocket(host: host, port: port, timeoutMilliseconds: 1000)
            try socket.sendAll("GET \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\n\r\n")
            let head = try socket.receive { $0.contains(UInt8(ascii: "\n")) }
            let statusLine = String(decoding: head.prefix { $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\n") }, as: UTF8.self)
            let parts = statusLine.split(separator: " ")
            guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let code = Int(parts[1]) else {
                throw FixtureError("not an HTTP status line: \(statusLine)")
            }
            guard code == status else { throw FixtureError("status \(code)") }
            return true
        }
    }

    /// Retries `probe` every 20 ms until it returns true; the error names what was awaited and the last failure.
    static func poll(timeout: Duration, what: String, _ probe: () throws -> Bool) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var lastFailure = "never answered"
        while true {
            do {
                if try probe() { return }
            } catch {
                lastFailure = "\(error)"
            }
            guard clock.now < deadline else {
                throw FixtureError("timed out after \(timeout) waiting for \(what); last failure: \(lastFailure)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
