import Foundation
import Hummingbird
import PortcullisCluster
import PortcullisJOSE

/// `/v1/revocations`: create, list, get with propagation status, lift cut-offs.
extension AdminAPI {
    func addRevocationRoutes(_ router: Router<ControlRequestContext>) {
        router.post("/v1/revocations") { request, context in
            var target = "(invalid request)"
            return try await audited("revocation.create", target: target, context: context) {
                let wait = try QueryInput.wait(request, max: config.maxWait)
                let input = try await RevocationInput.parse(RequestInput.jsonObject(request), now: Int64(Date().timeIntervalSince1970),
                                                            maxTokenLifetime: revocations.maxTokenLifetime)
                target = "\(input.kind.rawValue):\(input.value)"
                let event = try await confirmed {
                    try await revocations.add(kind: input.kind, value: input.value, issuer: input.issuer, until: input.until,
                                              actor: context.actor, reason: input.reason)
                }
                let response = try await revocationResponse(event, wait: wait, createdStatus: .created)
                return (response, ["id": event.revocation.id, "sequence": String(event.sequence)])
            }
        }

        router.get("/v1/revocations") { request, _ in
            let kind = try QueryInput.string(request, "kind").map { text -> Revocation.Kind in
                guard let kind = Revocation.Kind(rawValue: text) else {
                    throw APIError.invalid("kind", "expected one of jti, subject, client, key, got '\(text)'")
                }
                return kind
            }
            let value = QueryInput.string(request, "value")
            let after = try QueryInput.int(request, "after", in: 0...Int64.max, default: 0) ?? 0
            let limit = Int(try QueryInput.int(request, "limit", in: 1...1000, default: 100) ?? 100)
            let events = try await confirmed { try await store.list(kind: kind, value: value, afterSequence: after, limit: limit) }
            var page: [String: JSONValue] = ["items": .array(events.map(RevocationService.json)), "next_after": .null]
            if events.count == limit, let last = events.last { page["next_after"] = .integer(last.sequence) }
            return Response.json(.object(page))
        }

        router.get("/v1/revocations/:id") { request, context in
            let id = try context.parameters.require("id")
            let wait = try QueryInput.wait(request, max: config.maxWait)
            guard let event = try await confirmed({ try await store.get(id: id) }) else {
                throw APIError.notFound("no revocation '\(id)' (unknown, or expired and pruned)")
            }
            return try await revocationResponse(event, wait: wait, createdStatus: .ok)
        }

        router.delete("/v1/revocations/:id") { request, context in
            let id = try context.parameters.require("id")
            let reason = QueryInput.string(request, "reason")
            return try await audited("revocation.delete", target: id, context: context) {
                guard let event = try await confirmed({ try await store.get(id: id) }) else {
                    throw APIError.notFound("no revocation '\(id)'")
                }
                let original = event.revocation
                guard original.operation == .add, original.kind == .subject || original.kind == .client else {
                    throw APIError(.conflict, "not_deletable",
                                   original.operation == .delete ? "'\(id)' is itself a lift" :
                                   "\(original.kind.rawValue) revocations cannot be undone; only subject and client cut-offs can be lifted")
                }
                let lifted = try await confirmed { try await revocations.lift(event, actor: context.actor, reason: reason) }
                return (Response.json(RevocationService.json(lifted)), ["lifted": id, "id": lifted.revocation.id])
            }
        }
    }

    /// The change and its propagation; with `wait`, after every live gateway applied it (201/200)
    /// or the wait ran out (202, naming the laggards).
    private func revocationResponse(_ event: RevocationEvent, wait: Duration?, createdStatus: HTTPResponse.Status) async throws -> Response {
        let propagation: Propagation
        if let wait {
            propagation = try await confirmed { try await tracker.wait(sequence: event.sequence, timeout: wait) }
        } else {
            propagation = try await confirmed { try await tracker.current(sequence: event.sequence) }
        }
        guard case .object(var object) = RevocationService.json(event) else { return Response.json(RevocationService.json(event)) }
        object["propagation"] = propagation.json
        let status: HTTPResponse.Status = wait != nil && !propagation.complete ? .accepted : createdStatus
        return Response.json(.object(object), status: status)
    }
}

/// A validated `POST /v1/revocations` body.
struct RevocationInput: Sendable {
    var kind: Revocation.Kind
    var value: String
    var issuer: String?
    var until: Int64
    var reason: String?

    static let maxValueBytes = 1024
    /// Farthest a cut-off or a jti's `exp` may lie in the future.
    static let maxFuture: Int64 = 10 * 366 * 86_400

    static func parse(_ members: [String: JSONValue], now: Int64, maxTokenLifetime: Duration) throws -> RevocationInput {
        var fields = JSONFields(members)
        let kindText = try fields.requiredString("kind")
        guard let kind = Revocation.Kind(rawValue: kindText) else {
            throw APIError.invalid("kind", "expected one of jti, subject, client, key, got '\(kindText)'")
        }
        let value = try fields.requiredString("value")
        guard value.utf8.count <= maxValueBytes else { throw APIError.invalid("value", "longer than \(maxValueBytes) bytes") }
        guard !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw APIError.invalid("value", "must not contain control characters")
        }
        let issuer = try fields.string("issuer")
        if let issuer {
            guard !issuer.isEmpty, !issuer.contains("|"), issuer.utf8.count <= maxValueBytes else {
                throw APIError.invalid("issuer", "expected a non-empty iss value without '|'")
            }
        }
        let reason = try fields.string("reason")
        if let reason, reason.utf8.count > maxValueBytes { throw APIError.invalid("reason", "longer than \(maxValueBytes) bytes") }
        let exp = try fields.int("exp")
        let before = try timestamp(fields.raw("before"), field: "before", now: now)
        try fields.finish()

        let until: Int64
        switch kind {
        case .jti:
            if before != nil { throw APIError.invalid("before", "applies to subject and client revocations; a jti takes exp") }
            if issuer != nil { throw APIError.invalid("issuer", "a jti revocation applies to every issuer") }
            until = exp ?? now + maxTokenLifetime.components.seconds
            guard until > now else { throw APIError.invalid("exp", "the token has already expired (exp \(until) ≤ now \(now)); nothing to revoke") }
            guard until <= now + maxFuture else { throw APIError.invalid("exp", "more than 10 years in the future") }
        case .subject, .client:
            if exp != nil { throw APIError.invalid("exp", "applies to jti revocations; subject and client take before") }
            until = before ?? now
            guard until <= now + maxFuture else { throw APIError.invalid("before", "more than 10 years in the future") }
            guard until > 0 else { throw APIError.invalid("before", "must be a positive Unix time") }
        case .key:
            if exp != nil || before != nil {
                throw APIError.invalid(exp != nil ? "exp" : "before", "a key revocation takes effect now and has no time")
            }
            until = now
        }
        return RevocationInput(kind: kind, value: value, issuer: issuer, until: until, reason: reason)
    }

    /// Unix seconds, an RFC 3339 time, or `now`.
    static func timestamp(_ value: JSONValue?, field: String, now: Int64) throws -> Int64? {
        guard let value else { return nil }
        if let seconds = value.int64Value { return seconds }
        guard let text = value.stringValue else { throw APIError.invalid(field, "expected Unix seconds or an RFC 3339 time") }
        if text == "now" { return now }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        if let date = formatter.date(from: text) { return Int64(date.timeIntervalSince1970) }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return Int64(date.timeIntervalSince1970) }
        throw APIError.invalid(field, "expected Unix seconds, an RFC 3339 time or \"now\", got '\(text)'")
    }
}
