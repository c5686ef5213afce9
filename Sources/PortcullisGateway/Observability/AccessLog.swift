import Logging
import NIOCore

/// One line per request through swift-log (label `portcullis.access`); the process's log handler
/// decides text or JSON. Tokens never appear: only the subject, the route and a reason code.
struct AccessLog: Sendable {
    let logger: Logger

    init() {
        logger = Logger(label: "portcullis.access")
    }

    func record(_ entry: RequestLog, duration: TimeAmount) {
        var metadata: Logger.Metadata = [
            "request_id": .string(entry.requestID),
            "method": .string(entry.method),
            "path": .string(entry.path),
            "status": .stringConvertible(entry.status),
            "duration_ms": .string(String(format3(duration))),
        ]
        if let client = entry.client { metadata["client"] = .string(client) }
        if let route = entry.route { metadata["route"] = .string(route) }
        if let subject = entry.subject { metadata["subject"] = .string(subject) }
        if let reason = entry.reason { metadata["reason"] = .string(reason) }
        if let upstream = entry.upstream { metadata["upstream"] = .string(upstream) }
        logger.info("request", metadata: metadata)
    }

    private func format3(_ duration: TimeAmount) -> String {
        let micros = duration.nanoseconds / 1000
        return "\(micros / 1000).\(String(repeating: "0", count: 3 - String(micros % 1000).count))\(micros % 1000)"
    }
}
