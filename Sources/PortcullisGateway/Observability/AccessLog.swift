import NIOCore
import PortcullisObservability

/// One line per request, labelled `LogFormat.accessLogLabel` and written whatever `--log-level`
/// says (`access_log: false` turns it off), in the process's log format (`LogFormat.process`:
/// text, or JSON where numbers are JSON numbers). Tokens never appear: only the subject, client
/// id, route and a reason code; the path carries its query only with `access_log.query: true`.
///
/// The line is built directly (`LogLine`) and handed to `LineWriter.standardError`, whose thread
/// writes it: the event loop copies it into a buffer under that writer's lock and never waits on
/// stderr. Lines the writer cannot take (8 MiB already waiting) are dropped and counted.
struct AccessLog: Sendable {
    /// Whether `path` keeps the query string.
    let query: Bool
    let format: LogFormat
    let writer: LineWriter

    init(query: Bool = false, format: LogFormat = LogFormat.process, writer: LineWriter = .standardError) {
        self.query = query
        self.format = format
        self.writer = writer
    }

    func record(_ entry: RequestLog, duration: TimeAmount, upstreamTime: TimeAmount?) {
        writer.append(line(entry, duration: duration, upstreamTime: upstreamTime))
    }

    /// The entry's line; fields in ascending key order, as `LogLine` takes them.
    func line(_ entry: RequestLog, duration: TimeAmount, upstreamTime: TimeAmount?) -> String {
        var line = LogLine(format: format, label: LogFormat.accessLogLabel, source: "PortcullisGateway", message: "request")
        line.add("bytes_in", integer: entry.bytesIn)
        line.add("bytes_out", integer: entry.bytesOut)
        if let client = entry.client { line.add("client", client) }
        if let clientID = entry.clientID { line.add("client_id", clientID) }
        line.add("duration_ms", number: Self.milliseconds(duration))
        if let host = entry.host { line.add("host", host) }
        line.add("method", entry.method)
        line.add("path", query ? entry.target : entry.path)
        if let reason = entry.reason { line.add("reason", reason) }
        line.add("request_id", entry.requestID)
        if let route = entry.route { line.add("route", route) }
        line.add("status", integer: entry.status)
        if let subject = entry.subject { line.add("subject", subject) }
        if let traceID = entry.trace?.traceID { line.add("trace_id", traceID.description) }
        if let upstream = entry.upstream { line.add("upstream", upstream) }
        if let upstreamTime { line.add("upstream_ms", number: Self.milliseconds(upstreamTime)) }
        return line.finish()
    }

    /// Milliseconds with microsecond precision (`12.345`).
    static func milliseconds(_ duration: TimeAmount) -> Double {
        Double(duration.nanoseconds / 1000) / 1000
    }
}
