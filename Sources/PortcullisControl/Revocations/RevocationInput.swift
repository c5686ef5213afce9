import Foundation
import PortcullisCluster
import PortcullisJOSE

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
