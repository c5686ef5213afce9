import Foundation
import PortcullisCluster
import PortcullisJOSE

/// Makes revocation changes durable (through `RevocationStore`, whose write throws unless Redis
/// confirmed it) for the admin API and the authorization server, and counts them.
struct RevocationService: Sendable {
    let store: RevocationStore
    let metrics: ControlMetrics
    /// Lifetime assumed for a revoked jti whose `exp` was not given.
    let maxTokenLifetime: Duration

    /// A fresh revocation id: `rev_` and 20 random hex digits.
    static func newID() -> String {
        var generator = SystemRandomNumberGenerator()
        return "rev_" + Hex.encode((0..<10).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    /// Writes an `add` change. - Throws: whatever the store throws (the caller answers 503).
    /// - Parameters:
    ///   - beforeMillis: a subject, client or grant cut-off in Unix milliseconds (`until` is its
    ///     whole second, rounded up).
    ///   - client: a grant's client.
    func add(kind: Revocation.Kind, value: String, client: String? = nil, issuer: String?, until: Int64, beforeMillis: Int64? = nil,
             actor: String, reason: String?) async throws -> RevocationEvent {
        let revocation = Revocation(id: Self.newID(), operation: .add, kind: kind, value: value, issuer: issuer, until: until,
                                    createdAtMillis: Int64(Date().timeIntervalSince1970 * 1000), actor: actor, reason: reason,
                                    beforeMillis: beforeMillis, client: client)
        let event = try await store.write(revocation)
        metrics.revocation(kind: kind.rawValue, operation: "add")
        return event
    }

    /// Writes a grant cut-off at `nowMillis` for `subject`'s tokens for `client`, and in the same
    /// atomic batch a lift of each grant cut-off `superseding` names (the same grant's earlier
    /// ones, which the new one covers), so that those and their lifts are pruned in time.
    func addGrant(subject: String, client: String, issuer: String, nowMillis: Int64, superseding: [String], actor: String,
                  reason: String) async throws -> [RevocationEvent] {
        let grant = Revocation(id: Self.newID(), operation: .add, kind: .grant, value: subject, issuer: issuer,
                               until: RevocationInput.untilSecond(cutoffMillis: nowMillis), createdAtMillis: nowMillis, actor: actor,
                               reason: reason, beforeMillis: nowMillis, client: client)
        let lifts = superseding.map { Self.lift($0, of: grant, actor: actor, reason: "superseded by \(grant.id)", nowMillis: nowMillis) }
        let events = try await store.writeBatch([grant] + lifts)
        metrics.revocation(kind: Revocation.Kind.grant.rawValue, operation: "add")
        for _ in lifts { metrics.revocation(kind: Revocation.Kind.grant.rawValue, operation: "delete") }
        return events
    }

    /// The `delete` change that lifts the cut-off `id`, of the kind, value, issuer and client
    /// `original` has.
    private static func lift(_ id: String, of original: Revocation, actor: String, reason: String, nowMillis: Int64) -> Revocation {
        Revocation(id: newID(), operation: .delete, kind: original.kind, value: original.value, issuer: original.issuer, until: nowMillis / 1000,
                   createdAtMillis: nowMillis, actor: actor, reason: reason, lifts: id, client: original.client)
    }

    /// Writes the `add` change an admin call asked for.
    func add(_ input: RevocationInput, actor: String) async throws -> RevocationEvent {
        try await add(kind: input.kind, value: input.value, client: input.client, issuer: input.issuer, until: input.until,
                      beforeMillis: input.beforeMillis, actor: actor, reason: input.reason)
    }

    /// Lifts the subject, client or grant cut-off `event` set. - Throws: 400 for a reason over
    /// `RevocationInput.maxValueBytes`.
    func lift(_ event: RevocationEvent, actor: String, reason: String?) async throws -> RevocationEvent {
        try RevocationInput.checkReason(reason)
        let original = event.revocation
        let written = try await store.write(Self.lift(original.id, of: original, actor: actor, reason: reason ?? "lifts \(original.id)",
                                                      nowMillis: Int64(Date().timeIntervalSince1970 * 1000)))
        metrics.revocation(kind: original.kind.rawValue, operation: "delete")
        return written
    }

    /// Revokes token ids (the access token a code's record names, or one just issued), each until its `exp`,
    /// in one signed change.
    func revokeTokens(_ tokens: [(jti: String, exp: Int64)], actor: String, reason: String) async throws -> [RevocationEvent] {
        let now = Int64(Date().timeIntervalSince1970)
        // `exp` may come from Redis (a code's record): bounded by the longest lifetime a
        // token may have, as the admin API bounds what an operator writes.
        let latest = now + maxTokenLifetime.components.seconds
        let live = tokens.filter { $0.exp > now }.map {
            RevocationInput(kind: .jti, value: $0.jti, issuer: nil, until: min($0.exp, latest), reason: reason)
        }
        return try await addBatch(live, actor: actor)
    }

    /// Writes many `add` changes atomically (all or none): jti revocations of the same reason go
    /// into signed changes of up to `tokensPerChange` tokens each (a change has one reason), every
    /// other revocation is a change of its own, and all of them are one script call with
    /// consecutive sequence numbers and one pub/sub message.
    func addBatch(_ inputs: [RevocationInput], actor: String) async throws -> [RevocationEvent] {
        guard !inputs.isEmpty else { return [] }
        let created = Int64(Date().timeIntervalSince1970 * 1000)
        var changes: [Revocation] = []
        var byReason: [[RevocationInput]] = []
        var groupOfReason: [ExactKey?: Int] = [:]
        for input in inputs where input.kind == .jti {
            let reason = input.reason.map { ExactKey($0) }
            if let group = groupOfReason[reason] {
                byReason[group].append(input)
            } else {
                groupOfReason[reason] = byReason.count
                byReason.append([input])
            }
        }
        for tokens in byReason {
            var start = 0
            while start < tokens.count {
                let chunk = tokens[start..<min(start + Self.tokensPerChange, tokens.count)]
                let first = chunk[chunk.startIndex]
                changes.append(Revocation(id: Self.newID(), operation: .add, kind: .jti, value: first.value, issuer: nil, until: first.until,
                                          createdAtMillis: created, actor: actor, reason: first.reason,
                                          batch: chunk.dropFirst().map { Revocation.Token(jti: $0.value, expiresAt: $0.until) }))
                start += Self.tokensPerChange
            }
        }
        for input in inputs where input.kind != .jti {
            changes.append(Revocation(id: Self.newID(), operation: .add, kind: input.kind, value: input.value, issuer: input.issuer,
                                      until: input.until, createdAtMillis: created, actor: actor, reason: input.reason,
                                      beforeMillis: input.beforeMillis, client: input.client))
        }
        let events = try await store.writeBatch(changes)
        for input in inputs { metrics.revocation(kind: input.kind.rawValue, operation: "add") }
        return events
    }

    /// jti revocations per signed change in a batch: one MAC and one log entry for this many tokens.
    static let tokensPerChange = 1000

    static func json(_ event: RevocationEvent) -> JSONValue {
        let revocation = event.revocation
        return [
            "id": .string(revocation.id),
            "sequence": .integer(event.sequence),
            "operation": .string(revocation.operation.rawValue),
            "kind": .string(revocation.kind.rawValue),
            "value": .string(revocation.value),
            "client": revocation.client.map(JSONValue.string) ?? .null,
            "issuer": revocation.issuer.map(JSONValue.string) ?? .null,
            "until": .integer(revocation.until),
            "before_ms": revocation.operation == .add && revocation.kind.isCutoff
                ? .integer(revocation.cutoffMillis) : .null,
            "created_at_ms": .integer(revocation.createdAtMillis),
            "written_at_us": .integer(event.writtenAtMicros),
            "actor": .string(revocation.actor),
            "reason": revocation.reason.map(JSONValue.string) ?? .null,
            "lifts": revocation.lifts.map(JSONValue.string) ?? .null,
            "count": .integer(Int64(revocation.count)),
        ]
    }
}
