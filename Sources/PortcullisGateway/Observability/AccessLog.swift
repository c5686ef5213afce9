import Logging
import NIOCore
import PortcullisObservability

/// One line per request through swift-log (label `LogFormat.accessLogLabel`, written whatever
/// `--log-level` says; `access_log: false` turns it off); the process's log handler decides text
/// or JSON, where numbers are JSON numbers. Tokens never appear: only the subject, client id,
/// route and a reason code; the path carries its query only with `access_log.query: true`.
struct AccessLog: Sendable {
    let logger: Logger
    /// Whether `path` keeps the query string.
    let query: Bool

    init(query: Bool = false) {
        logger = Logger(label: LogFormat.accessLogLabel)
        self.query = query
    }

    func record(_ entry: RequestLog, duration: TimeAmount, upstreamTime: TimeAmount?) {
        var metadata: Logger.Metadata = [
            "request_id": .string(entry.requestID),
            "method": .string(entry.method),
            "path": .string(query ? entry.target : entry.path),
            "status": .stringConvertible(entry.status),
            "duration_ms": .stringConvertible(Self.milliseconds(duration)),
            "bytes_in": .stringConvertible(entry.bytesIn),
            "bytes_out": .stringConvertible(entry.bytesOut),
        ]
        if let client = entry.client { metadata["client"] = .string(client) }
        if let host = entry.host { metadata["host"] = .string(host) }
        if let route = entry.route { metadata["route"] = .string(route) }
        if let subject = entry.subject { metadata["subject"] = .string(subject) }
        if let clientID = entry.clientID { metadata["client_id"] = .string(clientID) }
        if let reason = entry.reason { metadata["reason"] = .string(reason) }
        if let upstream = entry.upstream { metadata["upstream"] = .string(upstream) }
        if let traceID = entry.trace?.traceID { metadata["trace_id"] = .string(traceID.description) }
        if let upstreamTime { metadata["upstream_ms"] = .stringConvertible(Self.milliseconds(upstreamTime)) }
        logger.info("request", metadata: metadata)
    }

    /// Milliseconds with microsecond precision (`12.345`).
    static func milliseconds(_ duration: TimeAmount) -> Double {
        Double(duration.nanoseconds / 1000) / 1000
    }
}
