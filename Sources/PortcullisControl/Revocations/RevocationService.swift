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
    func add(kind: Revocation.Kind, value: String, issuer: String?, until: Int64, actor: String, reason: String?) async throws -> RevocationEvent {
        let revocation = Revocation(id: Self.newID(), operation: .add, kind: kind, value: value, issuer: issuer, until: until,
                                    createdAtMillis: Int64(Date().timeIntervalSince1970 * 1000), actor: actor, reason: reason)
        let event = try await store.write(revocation)
        metrics.revocation(kind: kind.rawValue, operation: "add")
        return event
    }

    /// Lifts the subject or client cut-off `event` set.
    func lift(_ event: RevocationEvent, actor: String, reason: String?) async throws -> RevocationEvent {
        let original = event.revocation
        let revocation = Revocation(id: Self.newID(), operation: .delete, kind: original.kind, value: original.value,
                                    issuer: original.issuer, until: Int64(Date().timeIntervalSince1970),
                                    createdAtMillis: Int64(Date().timeIntervalSince1970 * 1000), actor: actor,
                                    reason: reason ?? "lifts \(original.id)")
        let written = try await store.write(revocation)
        metrics.revocation(kind: original.kind.rawValue, operation: "delete")
        return written
    }

    /// Revokes token ids (the access tokens of a refresh-token family), each until its `exp`.
    func revokeTokens(_ tokens: [(jti: String, exp: Int64)], actor: String, reason: String) async throws -> [RevocationEvent] {
        let now = Int64(Date().timeIntervalSince1970)
        var events: [RevocationEvent] = []
        for token in tokens where token.exp > now {
            events.append(try await add(kind: .jti, value: token.jti, issuer: nil, until: token.exp, actor: actor, reason: reason))
        }
        return events
    }

    static func json(_ event: RevocationEvent) -> JSONValue {
        let revocation = event.revocation
        return [
            "id": .string(revocation.id),
            "sequence": .integer(event.sequence),
            "operation": .string(revocation.operation.rawValue),
            "kind": .string(revocation.kind.rawValue),
            "value": .string(revocation.value),
            "issuer": revocation.issuer.map(JSONValue.string) ?? .null,
            "until": .integer(revocation.until),
            "created_at_ms": .integer(revocation.createdAtMillis),
            "written_at_us": .integer(event.writtenAtMicros),
            "actor": .string(revocation.actor),
            "reason": revocation.reason.map(JSONValue.string) ?? .null,
        ]
    }
}
