import Foundation
import PortcullisRedis

/// The control plane's side of revocations: durable writes, listing, propagation status.
/// A write either lands in Redis (sequence number, log entry, snapshot data and the pub/sub push,
/// all in one Lua script) and is acknowledged, or throws: nothing is ever acknowledged that Redis
/// did not confirm.
public final class RevocationStore: Sendable {
    private let client: RedisClient
    private let keys: ClusterKeys
    private let mac: ClusterMAC
    private let maxTokenLifetime: Int64
    /// Replicas that must confirm a write (`WAIT`), 0 for none.
    private let requiredReplicas: Int

    public init(client: RedisClient, keys: ClusterKeys, mac: ClusterMAC, maxTokenLifetime: Duration, requiredReplicas: Int = 0) {
        self.client = client
        self.keys = keys
        self.mac = mac
        self.maxTokenLifetime = maxTokenLifetime.components.seconds
        self.requiredReplicas = requiredReplicas
    }

    /// Atomically: next sequence, Redis time, log entry, expiry index, snapshot data, publish.
    static let writeScript = RedisScript("""
    local seq = redis.call('INCR', KEYS[1])
    redis.call('SET', KEYS[9], ARGV[8], 'NX')
    local t = redis.call('TIME')
    local us = t[1] .. string.format('%06d', tonumber(t[2]))
    local entry = seq .. ' ' .. us .. ' ' .. ARGV[1]
    redis.call('ZADD', KEYS[2], seq, entry)
    redis.call('ZADD', KEYS[3], ARGV[6], seq)
    redis.call('HSET', KEYS[8], ARGV[9], seq)
    local kind, op, value, untilv = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
    if kind == 'jti' then
      redis.call('ZADD', KEYS[4], untilv, value)
    elseif kind == 'subject' or kind == 'client' then
      local key = KEYS[5]
      if kind == 'client' then key = KEYS[6] end
      if op == 'add' then
        local current = redis.call('HGET', key, value)
        if not current or tonumber(current) < tonumber(untilv) then redis.call('HSET', key, value, untilv) end
      else
        redis.call('HDEL', key, value)
      end
    elseif kind == 'key' then
      redis.call('HSET', KEYS[7], value, untilv)
    end
    redis.call('PUBLISH', ARGV[7], entry)
    return {seq, us}
    """)

    /// Makes a revocation durable and pushes it to every node.
    /// - Throws: `RedisError` when Redis did not confirm; `ClusterError.notDurable` when required replicas did not.
    public func write(_ revocation: Revocation) async throws -> RevocationEvent {
        let signature = mac.sign(revocation.macFields)
        let json = revocation.json(mac: signature)
        let now = Int64(Date().timeIntervalSince1970)
        // How long the log keeps the entry: a jti until the token expires; a lifted cut-off long
        // enough for any node to see it; cut-offs and keys while in force (they are removed on delete).
        let logExpiry: Int64
        switch (revocation.kind, revocation.operation) {
        case (.jti, _): logExpiry = revocation.until + RevocationSet.expiryGrace
        case (_, .delete): logExpiry = now + maxTokenLifetime
        default: logExpiry = Int64.max / 2
        }
        let stored = revocation.kind == .jti ? revocation.value : revocation.scopedValue
        let reply = try await client.evalScript(Self.writeScript, keys: [
            RedisArgument(keys.revocationSequence), RedisArgument(keys.revocationLog), RedisArgument(keys.revocationExpiry),
            RedisArgument(keys.revokedJTIs), RedisArgument(keys.subjectCutoffs), RedisArgument(keys.clientCutoffs),
            RedisArgument(keys.revokedKeys), RedisArgument(keys.revocationIDs), RedisArgument(keys.revocationEpoch),
        ], arguments: [
            RedisArgument(json), RedisArgument(revocation.kind.rawValue), RedisArgument(revocation.operation.rawValue),
            RedisArgument(stored), RedisArgument(revocation.until), RedisArgument(logExpiry), RedisArgument(keys.revocationChannel),
            RedisArgument(UUID().uuidString), RedisArgument(revocation.id),
        ])
        guard let values = reply.array, values.count == 2, let sequence = values[0].int, let written = values[1].int ?? values[1].string.flatMap({ Int64($0) }) else {
            throw ClusterError.unexpectedReply("revocation write returned \(reply)")
        }
        if requiredReplicas > 0 {
            let acknowledged = try await client.send("WAIT", RedisArgument(requiredReplicas), "1000").int ?? 0
            guard acknowledged >= Int64(requiredReplicas) else {
                throw ClusterError.notDurable("only \(acknowledged) of \(requiredReplicas) Redis replicas confirmed the write within 1 s")
            }
        }
        return RevocationEvent(sequence: sequence, writtenAtMicros: written, revocation: revocation, mac: signature)
    }

    /// The sequence number of the latest change.
    public func currentSequence() async throws -> Int64 {
        try await client.send("GET", RedisArgument(keys.revocationSequence)).int ?? 0
    }

    /// Changes still in the log, oldest first, after `afterSequence`, optionally filtered.
    public func list(kind: Revocation.Kind? = nil, value: String? = nil, afterSequence: Int64 = 0, limit: Int = 100) async throws -> [RevocationEvent] {
        var result: [RevocationEvent] = []
        var cursor = afterSequence
        while result.count < limit {
            let batch = try await client.send("ZRANGEBYSCORE", RedisArgument(keys.revocationLog), RedisArgument("(\(cursor)"), "+inf",
                                              "LIMIT", "0", RedisArgument(max(limit * 2, 100))).array ?? []
            if batch.isEmpty { break }
            for entry in batch {
                guard let bytes = entry.bytes, let event = try? RevocationEvent.decode(bytes, mac: mac) else { continue }
                cursor = max(cursor, event.sequence)
                if let kind, event.revocation.kind != kind { continue }
                if let value, event.revocation.value != value { continue }
                result.append(event)
                if result.count == limit { break }
            }
        }
        return result
    }

    /// One change by its id.
    public func get(id: String) async throws -> RevocationEvent? {
        guard let sequence = try await client.send("HGET", RedisArgument(keys.revocationIDs), RedisArgument(id)).int else { return nil }
        let entries = try await client.send("ZRANGEBYSCORE", RedisArgument(keys.revocationLog), RedisArgument(sequence), RedisArgument(sequence)).array ?? []
        return entries.compactMap { $0.bytes }.compactMap { try? RevocationEvent.decode($0, mac: mac) }.first
    }

    /// Node id → microseconds from the durable write to applied, for nodes that acknowledged live.
    public func propagation(sequence: Int64) async throws -> [String: Int64] {
        (try await client.send("HGETALL", RedisArgument(keys.revocationAcks(sequence))).array ?? []).hashFields().compactMapValues { Int64($0) }
    }

    /// Removes log entries and jti data whose time has passed. Removing anything but an expired
    /// jti (a lifted cut-off's delete event) advances `rev:trimmed`, so a node that had not seen
    /// it resyncs from the snapshot instead of replaying an incomplete history.
    public func prune(now: Int64 = Int64(Date().timeIntervalSince1970)) async throws -> Int {
        let due = try await client.send("ZRANGEBYSCORE", RedisArgument(keys.revocationExpiry), "-inf", RedisArgument(now), "LIMIT", "0", "10000").array ?? []
        let sequences = due.compactMap(\.int)
        guard !sequences.isEmpty else { return 0 }
        let entries = try await client.pipeline(sequences.map {
            ["ZRANGEBYSCORE", RedisArgument(keys.revocationLog), RedisArgument($0), RedisArgument($0)]
        })
        var trimmed: Int64 = 0
        for (sequence, reply) in zip(sequences, entries) {
            let events = (try? reply.get().array ?? []) ?? []
            let isJTI = events.compactMap(\.bytes).compactMap { try? RevocationEvent.decode($0, mac: mac) }.allSatisfy { $0.revocation.kind == .jti }
            if !isJTI { trimmed = max(trimmed, sequence) }
        }
        var commands: [[RedisArgument]] = []
        if trimmed > 0 {
            // Set before removing, so no reader sees the hole without the marker.
            _ = try await client.evalScript(Self.raiseScript, keys: [RedisArgument(keys.revocationTrimmed)], arguments: [RedisArgument(trimmed)])
        }
        for sequence in sequences {
            commands.append(["ZREMRANGEBYSCORE", RedisArgument(keys.revocationLog), RedisArgument(sequence), RedisArgument(sequence)])
            commands.append(["ZREM", RedisArgument(keys.revocationExpiry), RedisArgument(sequence)])
        }
        commands.append(["ZREMRANGEBYSCORE", RedisArgument(keys.revokedJTIs), "-inf", RedisArgument(now - RevocationSet.expiryGrace)])
        _ = try await client.pipeline(commands)
        return sequences.count
    }

    static let raiseScript = RedisScript("""
    local current = tonumber(redis.call('GET', KEYS[1]) or '0')
    if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end
    return 1
    """)
}

/// Cluster-level failures with a readable message.
public enum ClusterError: Error, CustomStringConvertible, Sendable {
    case notDurable(String)
    case unexpectedReply(String)
    case invalid(String)

    public var description: String {
        switch self {
        case .notDurable(let why): "not durable: \(why)"
        case .unexpectedReply(let why): "unexpected Redis reply: \(why)"
        case .invalid(let why): why
        }
    }
}
