import Foundation
import PortcullisTestSupport
import Testing

/// `Scripts/wire_clock.py` running: a capture of the loopback interface that records, by the
/// kernel's clock, when a gateway sent a WebSocket close frame or ended an HTTP/2 stream — the
/// moment a connection's end reached its client, without the clients' own scheduling.
struct WireClock {
    /// One connection's end as the capture saw it.
    struct End: Decodable {
        /// Unix time of the segment that completed the frame.
        let t: Double
        /// The gateway's listening port.
        let port: Int
        let client_port: Int
        /// "ws-close", "h2-end" (HEADERS with END_STREAM) or "h2-reset".
        let kind: String
        let stream: Int?
        /// The WebSocket close code or the RST_STREAM error code.
        let code: Int?
    }

    struct Record: Decodable {
        let events: [End]
        /// Connections the capture missed bytes of (their ends may be missing).
        let lost: Int
        let packets: Int

        /// WebSocket close frames sent in `window`.
        func webSocketCloses(in window: Range<Double>) -> [End] {
            events.filter { $0.kind == "ws-close" && window.contains($0.t) }
        }

        /// The first end of each HTTP/2 stream ended in `window` (trailers and a reset after them
        /// are one end).
        func streamEnds(in window: Range<Double>) -> [End] {
            var first: [String: End] = [:]
            for end in events where end.kind != "ws-close" && window.contains(end.t) {
                let key = "\(end.port) \(end.client_port) \(end.stream ?? 0)"
                if first[key] == nil { first[key] = end }
            }
            return first.values.sorted { $0.t < $1.t }
        }
    }

    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/wire_clock.py").path

    let process: ManagedProcess
    private let out: String
    private let done: String

    /// Starts capturing connections to `ports`; connections opened before this are not followed.
    init(ports: [Int], directory: String) async throws {
        out = directory + "/wire-clock.json"
        done = directory + "/wire-clock-done"
        process = try ManagedProcess(executable: "/usr/bin/env",
                                     arguments: ["python3", Self.script, "--ports", ports.map(String.init).joined(separator: ","), "--out", out, "--done", done],
                                     logFile: directory + "/wire-clock.log")
        let process = process
        let started = try await Poll.until(timeout: .seconds(10)) { process.output.contains("ready") || !process.isRunning }
        #expect(started && process.isRunning, "the wire clock did not start (it needs CAP_NET_RAW): \(process.output)")
    }

    /// Stops capturing and returns what was seen.
    func stop() async throws -> Record {
        _ = FileManager.default.createFile(atPath: done, contents: nil)
        let status = await process.waitForExit(timeout: .seconds(10))
        #expect(status == 0, "wire clock: \(process.output)")
        return try JSONDecoder().decode(Record.self, from: Data(contentsOf: URL(fileURLWithPath: out)))
    }
}
