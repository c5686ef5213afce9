import Foundation
import NIOCore
@testable import PortcullisGateway
@testable import PortcullisObservability
import PortcullisTestSupport
import Synchronization
import Testing

/// The access log's writer (`LineWriter`) on a real pipe, and its lines (`LogLine`) in both
/// formats. The build before wrote each line to stderr on the event loop, so a log reader that
/// stopped reading (a stalled journald or container runtime) stopped the gateway.
@Suite("access log: lines and their writer")
struct AccessLogWriterTests {
    /// A pipe whose read end a thread drains into `received` while `reading` is set.
    final class PipeReader: Sendable {
        let readEnd: Int32
        let writeEnd: Int32
        let received = Mutex<[UInt8]>([])
        let reading = Atomic<Bool>(true)
        let stopped = Atomic<Bool>(false)

        init() {
            var fds: [Int32] = [0, 0]
            precondition(pipe(&fds) == 0)
            (readEnd, writeEnd) = (fds[0], fds[1])
            let thread = Thread { [self] in
                var chunk = [UInt8](repeating: 0, count: 65536)
                while !stopped.load(ordering: .relaxed) {
                    guard reading.load(ordering: .relaxed) else {
                        Thread.sleep(forTimeInterval: 0.002)
                        continue
                    }
                    var poll = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
                    guard Foundation.poll(&poll, 1, 10) > 0 else { continue }
                    let count = read(readEnd, &chunk, chunk.count)
                    if count <= 0 { return }
                    received.withLock { $0.append(contentsOf: chunk[0..<count]) }
                }
            }
            thread.start()
        }

        var lines: [Substring] { String(decoding: received.withLock { $0 }, as: UTF8.self).split(separator: "\n") }

        func close() {
            stopped.store(true, ordering: .relaxed)
            Thread.sleep(forTimeInterval: 0.05)
            Foundation.close(readEnd)
            Foundation.close(writeEnd)
        }
    }

    /// `id:<n>:<filler>:<n>` — a line read back whole names the same `n` at both ends.
    static func line(_ id: Int, length: Int) -> String {
        "id:\(id):" + String(repeating: "x", count: length) + ":\(id)\n"
    }

    static func isWhole(_ line: Substring) -> Bool {
        let parts = line.split(separator: ":", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "id" && parts[1] == parts[3] && parts[2].allSatisfy { $0 == "x" }
    }

    @Test("lines from many threads reach a pipe whole, none lost, while another writer writes lines to the same pipe")
    func linesStayWhole() async throws {
        let pipe = PipeReader()
        defer { pipe.close() }
        let writer = LineWriter(descriptor: pipe.writeEnd, batchDelay: .milliseconds(1))
        defer { writer.close() }
        let perThread = 1500
        await withTaskGroup(of: Void.self) { group in
            for thread in 0..<4 {
                group.addTask {
                    for index in 0..<perThread {
                        let id = thread * perThread + index
                        // Lengths from 20 bytes to near PIPE_BUF, so pieces are cut at line ends.
                        writer.append(Self.line(id, length: id % 97 == 0 ? 4000 : 20 + id % 300))
                    }
                }
            }
            // The process log: its own write per line on the same descriptor.
            group.addTask {
                for index in 0..<1000 {
                    let text = Self.line(100_000 + index, length: 150)
                    _ = text.utf8CString.withUnsafeBufferPointer { write(pipe.writeEnd, $0.baseAddress, $0.count - 1) }
                }
            }
        }
        writer.flush()
        let complete = try await Poll.until(timeout: .seconds(10)) { pipe.lines.count == 4 * perThread + 1000 }
        let lines = pipe.lines
        #expect(complete, "\(lines.count) lines")
        let broken = lines.filter { !Self.isWhole($0) }
        #expect(broken.isEmpty, "lines cut or interleaved: \(broken.prefix(3))")
        #expect(Set(lines.compactMap { $0.split(separator: ":")[safe: 1].flatMap { Int($0) } }).count == 4 * perThread + 1000)
        #expect(writer.droppedLines == 0)
        // A line longer than PIPE_BUF is written whole on its own (no other writer now: a pipe
        // may split so long a write around another writer's).
        let before = pipe.lines.count
        for id in 0..<3 { writer.append(Self.line(200_000 + id, length: 9000)) }
        writer.flush()
        let long = try await Poll.until(timeout: .seconds(10)) { pipe.lines.count == before + 3 }
        #expect(long && pipe.lines.suffix(3).allSatisfy(Self.isWhole))
    }

    @Test("a reader that stops reading never blocks the caller: lines past the bound are dropped and counted, the rest arrive whole once it reads again")
    func stalledReaderDropsInsteadOfBlocking() async throws {
        let pipe = PipeReader()
        defer { pipe.close() }
        pipe.reading.store(false, ordering: .relaxed)
        let writer = LineWriter(descriptor: pipe.writeEnd, maxBuffered: 256 << 10, batchDelay: .milliseconds(1))
        defer { writer.close() }
        let clock = ContinuousClock()
        let total = 20_000
        let elapsed = clock.measure {
            for id in 0..<total { writer.append(Self.line(id, length: 100)) }
        }
        // 20,000 lines of about 110 bytes (2.2 MB) against a 64 KiB pipe and a 256 KiB bound.
        #expect(elapsed < .seconds(2), "appending waited on the stalled pipe: \(elapsed)")
        let dropped = writer.droppedLines
        #expect(dropped > 0 && dropped < total, "\(dropped)")
        pipe.reading.store(true, ordering: .relaxed)
        writer.flush(timeout: .seconds(10))
        let complete = try await Poll.until(timeout: .seconds(10)) { pipe.lines.count == total - dropped }
        #expect(complete, "\(pipe.lines.count) of \(total - dropped)")
        #expect(pipe.lines.allSatisfy(Self.isWhole))
    }

    @Test("a gateway whose stderr reader stops reading goes on serving: its access-log lines wait in the writer's buffer, not on the event loop")
    func stalledStderrReader() async throws {
        let upstream = try await TestUpstream.start()
        let directory = try TemporaryDirectory.make(prefix: "portcullis-stalled-log")
        let fifo = directory + "/stderr.fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        // The reader opens the pipe (so the gateway can) and never reads: 64 KiB fill it.
        let reader = open(fifo, O_RDONLY | O_NONBLOCK)
        #expect(reader >= 0)
        let port = try FreePort.allocate(), adminPort = try FreePort.allocate()
        let config = directory + "/gateway.yaml"
        try """
        listen: 127.0.0.1:\(port)
        admin_listen: 127.0.0.1:\(adminPort)
        event_loops: 1
        routes:
          - {name: open, path_prefix: /, upstream: {targets: [\(upstream.address)]}}
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let process = try ManagedProcess(executable: PortcullisBinary.path, arguments: ["gateway", "--config", config], logFile: fifo)
        defer {
            process.signal(SIGKILL)
            close(reader)
            try? FileManager.default.removeItem(atPath: directory)
        }
        try await Readiness.waitForHTTP(port: adminPort, path: "/readyz", timeout: .seconds(20))
        let client = try HTTPTestClient(port: port, timeout: 5)
        // About 240 bytes a line: 1,500 requests write some 360 KB, several times what the pipe holds.
        var served = 0
        for index in 0..<1500 {
            guard let response = try? client.request("GET", "/stalled/\(index)"), response.status == 200 else { break }
            served += 1
        }
        #expect(served == 1500, "the gateway stopped answering after \(served) requests")
        let metrics = try HTTPTestClient(port: adminPort, timeout: 5).request("GET", "/metrics").text
        #expect(metrics.contains("portcullis_log_lines_dropped_total 0"), "\(metrics.split(separator: "\n").filter { $0.contains("access_log") })")
        await upstream.stop()
    }

    func entry() -> RequestLog {
        var entry = RequestLog(requestID: "rid-1", method: "GET", target: "/api/x?secret=1", start: .now())
        entry.route = "api"
        entry.host = "api.test"
        entry.client = "127.0.0.1"
        entry.status = 200
        entry.subject = "a b=\"c\"\n"
        entry.clientID = "web"
        entry.bytesIn = 5
        entry.bytesOut = 17
        entry.tries("127.0.0.1:9")
        return entry
    }

    @Test("an access-log line in json: one object, numbers as numbers, the query left out, fields in key order")
    func jsonLine() throws {
        let text = AccessLog(format: .json).line(entry(), duration: .microseconds(1234), upstreamTime: .microseconds(1000))
        #expect(text.hasSuffix("}\n") && text.filter { $0 == "\n" }.count == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(object["logger"] as? String == "portcullis.access" && object["msg"] as? String == "request" && object["level"] as? String == "info")
        #expect(object["status"] as? Int == 200 && object["bytes_in"] as? Int == 5 && object["bytes_out"] as? Int == 17)
        #expect(object["duration_ms"] as? Double == 1.234 && object["upstream_ms"] as? Double == 1.0)
        #expect(object["path"] as? String == "/api/x" && object["subject"] as? String == "a b=\"c\"\n")
        let ts = try #require(object["ts"] as? String)
        #expect(ts.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/) != nil, "\(ts)")
        let keys = ["bytes_in", "bytes_out", "client", "client_id", "duration_ms", "host", "method", "path", "request_id", "route", "status",
                    "subject", "upstream", "upstream_ms"]
        let positions = keys.map { text.range(of: "\"\($0)\":")!.lowerBound }
        #expect(positions == positions.sorted())
    }

    @Test("an access-log line in text: the stream handler's layout, values escaped and quoted where needed")
    func textLine() throws {
        let text = AccessLog(query: true, format: .text).line(entry(), duration: .microseconds(1234), upstreamTime: nil)
        let expectedFields = #"bytes_in=5 bytes_out=17 client=127.0.0.1 client_id=web duration_ms=1.234 host=api.test method=GET path="/api/x?secret=1" request_id=rid-1 route=api status=200 subject="a b=\"c\"\n" upstream=127.0.0.1:9"#
        let match = try #require(text.wholeMatch(of: /(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{4}) info portcullis\.access: (.*) \[PortcullisGateway\] request\n/))
        #expect(match.2 == expectedFields[...], "\(text)")
    }
}

extension Array {
    fileprivate subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
