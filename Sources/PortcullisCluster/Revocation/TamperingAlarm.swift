import Foundation
import Logging
import Metrics
import Synchronization

/// Reports what a Redis writer without the cluster secret did: a record whose MAC does not
/// verify, a signed record moved from its place, a head rolled back, entries missing from the
/// log. Each report counts in `portcullis_cluster_tampering_total{key}` (the key without the
/// cluster prefix) and logs an error naming the whole key, at most once a minute per key and reason.
public final class TamperingAlarm: Sendable {
    private let logger: Logger
    private let prefix: String
    private let lastLogged = Mutex<[String: ContinuousClock.Instant]>([:])

    public init(prefix: String, logger: Logger) {
        self.prefix = prefix
        self.logger = logger
    }

    /// - Parameters:
    ///   - key: the Redis key (with the prefix) or channel where the tampering was seen.
    ///   - reason: what was wrong, for the log line.
    public func report(key: String, _ reason: String) {
        let key = BoundedText.cut(key, to: Self.maxLoggedBytes)
        let name = key.hasPrefix(prefix) ? String(key.dropFirst(prefix.count)) : key
        Counter(label: "portcullis_cluster_tampering_total", dimensions: [("key", Self.family(name))]).increment()
        let now = ContinuousClock.now
        let shouldLog = lastLogged.withLock { logged in
            let tag = name + "|" + BoundedText.cut(reason, to: Self.maxLoggedBytes)
            if let last = logged[tag], now - last < .seconds(60) { return false }
            // Names and reasons carry what the writer chose: keep the memory bounded.
            if logged.count >= 1024 { logged.removeAll() }
            logged[tag] = now
            return true
        }
        if shouldLog {
            logger.error("Redis tampering: \(reason)", metadata: ["key": "\(key)"])
        }
    }

    /// Keys with an id in them (`node:<id>`, `rev:acks:<seq>`, `keys:set:<iss>`, a chore's lease)
    /// count under one label value, so the metric's cardinality stays fixed.
    static func family(_ name: String) -> String {
        for family in ["rev:acks:", "node:", "keys:set:", "keys:lock:", "control:lock:"] where name.hasPrefix(family) { return family + "*" }
        return name
    }

    /// The most bytes of a key or reason logged and remembered, so that an id a Redis writer
    /// made arbitrarily long costs no more.
    static let maxLoggedBytes = 256
}
