import Foundation
import Logging
import PortcullisCluster
import PortcullisJOSE
import PortcullisRedis

/// Where every mutating admin call is recorded: a Redis stream (`ClusterKeys.auditLog`, capped at
/// about 100 000 entries) and a log line, with who (the credential's name), what, the target,
/// when, from where (the peer address) and the outcome.
struct AuditLog: Sendable {
    struct Entry: Sendable {
        var actor: String
        var action: String
        var target: String
        var from: String
        /// `ok` or the error code the caller got.
        var outcome: String
        var status: Int
        var details: [String: String] = [:]
    }

    let client: RedisClient
    let keys: ClusterKeys
    let logger: Logger
    static let maxEntries = 100_000
    /// The most bytes of a field or a detail an entry keeps (a revocation's reason, at most 1 024,
    /// fits whole); past it the value is cut and says how long it was. Without it anyone, without
    /// a credential, could write a refused call's request path, as long as a request head may be,
    /// into the Redis every node shares at the rate refusals are audited.
    static let maxValueBytes = 1_024
    /// The most details an entry keeps (in the order of their names).
    static let maxDetails = 32

    /// `value`, cut to `maxValueBytes`.
    static func bounded(_ value: String) -> String {
        BoundedText.cut(value, to: maxValueBytes)
    }

    /// Records `entry`. A Redis failure is logged (the log line is the second record) and does not
    /// change the answer to the caller: the change itself was already made or refused.
    func record(_ entry: Entry) async {
        let entry = Entry(actor: Self.bounded(entry.actor), action: Self.bounded(entry.action), target: Self.bounded(entry.target),
                          from: Self.bounded(entry.from), outcome: Self.bounded(entry.outcome), status: entry.status,
                          details: Dictionary(entry.details.sorted { $0.key < $1.key }.prefix(Self.maxDetails)
                              .map { (Self.bounded($0.key), Self.bounded($0.value)) }, uniquingKeysWith: { first, _ in first }))
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        var fields: [RedisArgument] = [
            "actor", RedisArgument(entry.actor), "action", RedisArgument(entry.action), "target", RedisArgument(entry.target),
            "from", RedisArgument(entry.from), "at_ms", RedisArgument(now), "outcome", RedisArgument(entry.outcome),
            "status", RedisArgument(entry.status),
        ]
        for (key, value) in entry.details.sorted(by: { $0.key < $1.key }) {
            fields += [RedisArgument("detail." + key), RedisArgument(value)]
        }
        var metadata: Logger.Metadata = [
            "audit": "true", "actor": "\(entry.actor)", "action": "\(entry.action)", "target": "\(entry.target)",
            "from": "\(entry.from)", "outcome": "\(entry.outcome)", "status": "\(entry.status)",
        ]
        for (key, value) in entry.details { metadata["detail." + key] = "\(value)" }
        logger.notice("admin \(entry.action)", metadata: metadata)
        do {
            _ = try await client.send(["XADD", RedisArgument(keys.auditLog), "MAXLEN", "~", RedisArgument(Self.maxEntries), "*"] + fields)
        } catch {
            logger.error("could not write the audit entry to Redis (it is in this log line)", metadata: metadata.merging(["error": "\(error)"]) { $1 })
        }
    }

    /// The newest `count` entries, newest first.
    func recent(count: Int) async throws -> [JSONValue] {
        let reply = try await client.send("XREVRANGE", RedisArgument(keys.auditLog), "+", "-", "COUNT", RedisArgument(count))
        var result: [JSONValue] = []
        for item in reply.array ?? [] {
            guard let pair = item.array, pair.count == 2, let id = pair[0].string, let flat = pair[1].array else { continue }
            var object: [String: JSONValue] = ["id": .string(id)]
            var details: [String: JSONValue] = [:]
            for (key, value) in flat.hashFields() {
                switch key {
                case "at_ms", "status": object[key] = Int64(value).map(JSONValue.integer) ?? .string(value)
                case _ where key.hasPrefix("detail."): details[String(key.dropFirst(7))] = .string(value)
                default: object[key] = .string(value)
                }
            }
            object["details"] = .object(details)
            result.append(.object(object))
        }
        return result
    }
}
