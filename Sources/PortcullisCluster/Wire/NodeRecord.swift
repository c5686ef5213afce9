import Foundation
import PortcullisRedis

/// What a gateway node says about itself in Redis (HASH `node:<id>`), refreshed every heartbeat
/// and expiring after three, so a dead node disappears on its own.
///
/// The record is signed by the node (field `mac`, over every other field but `ack`) and its
/// applied revocation state is the signed `NodeAck` in field `ack`, so a Redis writer can neither
/// invent a node, nor keep a dead node's record alive past three of its heartbeats (readers check
/// the signed heartbeat time), nor make a node look further along than it is.
public struct NodeRecord: Sendable, Equatable {
    public var id: String
    /// The node process (random per start); only its own acknowledgements count.
    public var instance: String
    public var role: String
    public var address: String
    public var adminAddress: String
    public var version: String
    /// Unix milliseconds.
    public var startedAtMillis: Int64
    public var heartbeatAtMillis: Int64
    /// The node's heartbeat interval: a record older than three of them is dead.
    public var heartbeatIntervalMillis: Int64
    /// The node's signed acknowledgement of its revocation state; nil before its first sync.
    public var ack: NodeAck?
    /// From `ack` (-1 without one). Readers compare its epoch with the head's before counting it.
    public var appliedSequence: Int64 { ack?.sequence ?? -1 }
    /// `issuer=version` pairs of the key sets in use.
    public var keySetVersions: [String: String]
    /// cluster, fallback or local.
    public var rateLimitMode: String
    public var redisConnected: Bool
    public var revocationStalenessSeconds: Double
    /// Set in the record a node leaves behind at shutdown (signed, like the rest): readers drop it
    /// at once, while a record that merely disappeared is still expected for three heartbeats.
    public var leaving = false

    public init(id: String, instance: String, role: String, address: String, adminAddress: String, version: String, startedAtMillis: Int64,
                heartbeatAtMillis: Int64, heartbeatIntervalMillis: Int64, ack: NodeAck?, keySetVersions: [String: String],
                rateLimitMode: String, redisConnected: Bool, revocationStalenessSeconds: Double) {
        self.id = id
        self.instance = instance
        self.role = role
        self.address = address
        self.adminAddress = adminAddress
        self.version = version
        self.startedAtMillis = startedAtMillis
        self.heartbeatAtMillis = heartbeatAtMillis
        self.heartbeatIntervalMillis = heartbeatIntervalMillis
        self.ack = ack
        self.keySetVersions = keySetVersions
        self.rateLimitMode = rateLimitMode
        self.redisConnected = redisConnected
        self.revocationStalenessSeconds = revocationStalenessSeconds
    }

    /// The hash field holding the node's latest `NodeAck` (the revocation sync writes it right
    /// after applying a change; the heartbeat repeats it).
    static let ackField: RedisArgument = "ack"

    /// The command that sets a node record's `ack` to `ack` only while the record exists (an
    /// expired record is recreated, with its TTL, by the next heartbeat). A plain `EVAL`, not a
    /// cached script: it goes out in the acknowledgement writer's pipeline.
    static func ackUpdate(key: String, ack: NodeAck) -> [RedisArgument] {
        ["EVAL", "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end return 1", "1",
         RedisArgument(key), ackField, RedisArgument(ack.wireText)]
    }

    /// The signed fields, in order (everything but `ack` and `mac`).
    private var signedFields: [(String, String)] {
        [
            ("id", id), ("instance", instance), ("role", role), ("address", address), ("admin_address", adminAddress), ("version", version),
            ("started_ms", String(startedAtMillis)), ("heartbeat_ms", String(heartbeatAtMillis)),
            ("interval_ms", String(heartbeatIntervalMillis)),
            ("keysets", keySetVersions.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")),
            ("ratelimit_mode", rateLimitMode), ("redis_connected", redisConnected ? "1" : "0"),
            ("staleness_s", String(format: "%.3f", revocationStalenessSeconds)), ("leaving", leaving ? "1" : "0"),
        ]
    }

    private static func macFields(_ fields: [(String, String)]) -> [String] {
        ["node3"] + fields.flatMap { [$0.0, $0.1] }
    }

    /// Field/value arguments for HSET: the signed fields, their MAC and the latest ack.
    func fields(mac: ClusterMAC) -> [RedisArgument] {
        let signed = signedFields
        var arguments = signed.flatMap { [RedisArgument($0.0), RedisArgument($0.1)] }
        arguments += ["mac", RedisArgument(mac.sign(Self.macFields(signed)))]
        if let ack { arguments += [Self.ackField, RedisArgument(ack.wireText)] }
        return arguments
    }

    /// Why a stored record was not accepted.
    enum RecordError: Error, CustomStringConvertible {
        case malformed
        case badMAC
        case expired(ageMillis: Int64)

        var description: String {
            switch self {
            case .malformed: "malformed node record"
            case .badMAC: "node record MAC does not verify (not written by a node holding the cluster secret)"
            case .expired(let age): "node record's signed heartbeat is \(age) ms old (a dead node's record kept alive)"
            }
        }
    }

    /// The latest start or heartbeat a record may state (the year 2100), in Unix milliseconds.
    static let latestPlausibleMillis: Int64 = 4_102_444_800_000
    /// The longest heartbeat interval a record may state: an hour.
    static let longestIntervalMillis: Int64 = 3_600_000

    /// Reads and authenticates a stored record.
    /// - Parameter slack: allowed clock difference between the node and the reader.
    init(hash: [RedisValue], id expectedID: String, mac: ClusterMAC, nowMillis: Int64, slackMillis: Int64 = 2000) throws(RecordError) {
        let map = hash.hashFields()
        guard let id = map["id"], id == expectedID, let instance = map["instance"], let role = map["role"], let macText = map["mac"],
              let started = map["started_ms"].flatMap({ Int64($0) }), let heartbeat = map["heartbeat_ms"].flatMap({ Int64($0) }),
              let interval = map["interval_ms"].flatMap({ Int64($0) }) else { throw .malformed }
        // Range-checked before any arithmetic, signed or not: a holder of the cluster secret (any
        // gateway host) could sign a record whose numbers overflow the age and liveness sums of
        // every reader, and the overflow's trap would stop every node of the cluster.
        guard (0...Self.latestPlausibleMillis).contains(started), (0...Self.latestPlausibleMillis).contains(heartbeat),
              (1...Self.longestIntervalMillis).contains(interval) else { throw .malformed }
        let staleness = Double(map["staleness_s"] ?? "") ?? 0
        guard staleness.isFinite, staleness >= 0 else { throw .malformed }
        var versions: [String: String] = [:]
        for pair in (map["keysets"] ?? "").split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { versions[String(parts[0])] = String(parts[1]) }
        }
        self.init(id: id, instance: instance, role: role, address: map["address"] ?? "", adminAddress: map["admin_address"] ?? "",
                  version: map["version"] ?? "", startedAtMillis: started, heartbeatAtMillis: heartbeat, heartbeatIntervalMillis: interval,
                  ack: nil, keySetVersions: versions, rateLimitMode: map["ratelimit_mode"] ?? "unknown",
                  redisConnected: map["redis_connected"] == "1", revocationStalenessSeconds: staleness)
        leaving = map["leaving"] == "1"
        let signed = signedFields
        guard signed.allSatisfy({ map[$0.0] == $0.1 }), mac.verify(macText, Self.macFields(signed)) else { throw .badMAC }
        let age = nowMillis - heartbeat
        guard age <= interval * 3 + slackMillis else { throw .expired(ageMillis: age) }
        // A forged acknowledgement in a genuine record: the node stays live, confirming nothing.
        if let text = map["ack"] {
            switch Result(catching: { () throws(NodeAck.DecodeError) in try NodeAck.decode(text, mac: mac) }) {
            case .success(let ack) where ack.node == id && ack.instance == instance: self.ack = ack
            case .success(let ack) where ack.node == id: break  // the previous process's, until this one acknowledges
            case .success(let ack): ackRejection = "acknowledgement signed for node '\(ack.node)'"
            case .failure(let error): ackRejection = "\(error)"
            }
        }
    }

    /// Why the stored acknowledgement was not accepted (set only by the reading initialiser).
    public private(set) var ackRejection: String?
}
