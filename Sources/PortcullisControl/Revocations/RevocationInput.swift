import Foundation
import PortcullisCluster
import PortcullisJOSE

/// A validated `POST /v1/revocations` body.
struct RevocationInput: Sendable {
    var kind: Revocation.Kind
    /// The jti, subject, client id, kid or session id; a grant's subject.
    var value: String
    /// A grant's client id.
    var client: String? = nil
    var issuer: String?
    /// jti: `exp`; session: when it ends; key: now; subject/client/grant: the cut-off rounded up to a
    /// whole second. Unix seconds.
    var until: Int64
    /// subject/client/grant: the cut-off, Unix milliseconds.
    var beforeMillis: Int64?
    var reason: String?

    /// What the audit log names: `kind:value`, and a grant's client (`grant:alice client:web-app`).
    var auditTarget: String {
        "\(kind.rawValue):\(value)" + (client.map { " client:" + $0 } ?? "")
    }

    static let maxValueBytes = 1024
    /// The kinds, for error messages: `jti, subject, client, grant, key, session`.
    static let kinds = Revocation.Kind.allCases.map(\.rawValue).joined(separator: ", ")
    /// Farthest a cut-off or a jti's `exp` may lie in the future.
    static let maxFuture: Int64 = 10 * 366 * 86_400

    /// - Parameter nowMillis: the same instant as `now`, in milliseconds (default: `now`'s second).
    static func parse(_ members: [String: JSONValue], now: Int64, nowMillis: Int64? = nil, maxTokenLifetime: Duration) throws -> RevocationInput {
        let nowMillis = nowMillis ?? now * 1000
        var fields = JSONFields(members)
        let kindText = try fields.requiredString("kind")
        guard let kind = Revocation.Kind(rawValue: kindText) else {
            throw APIError.invalid("kind", "expected one of \(Self.kinds), got '\(kindText)'")
        }
        let value = try fields.requiredString("value")
        try checkIdentifier(value, field: "value")
        let client = try fields.string("client")
        if let client {
            guard !client.isEmpty else { throw APIError.invalid("client", "must not be empty") }
            try checkIdentifier(client, field: "client")
        }
        guard (kind == .grant) == (client != nil) else {
            throw APIError.invalid("client", kind == .grant ? "a grant revocation names its client (value is the subject)"
                                                            : "applies to grant revocations only")
        }
        let issuer = try fields.string("issuer")
        if let issuer {
            guard !issuer.isEmpty, !issuer.contains("|") else {
                throw APIError.invalid("issuer", "expected a non-empty iss value without '|'")
            }
            // Nodes read `*` as every issuer: as a value it would revoke more than it names.
            guard issuer != "*" else { throw APIError.invalid("issuer", "'*' is not an issuer; leave issuer out to revoke for every issuer") }
            try checkIdentifier(issuer, field: "issuer")
        }
        let reason = try fields.string("reason")
        try checkReason(reason)
        let exp = try fields.int("exp")
        let before = try timestampMillis(fields.raw("before"), field: "before", nowMillis: nowMillis)
        try fields.finish()

        let until: Int64
        var beforeMillis: Int64?
        switch kind {
        case .jti, .session:
            if before != nil {
                throw APIError.invalid("before", "applies to subject, client and grant revocations; a \(kind.rawValue) takes exp")
            }
            if kind == .jti, issuer != nil { throw APIError.invalid("issuer", "a jti revocation applies to every issuer") }
            until = exp ?? now + maxTokenLifetime.components.seconds
            guard until > now else {
                throw APIError.invalid("exp", kind == .jti ? "the token has already expired (exp \(until) ≤ now \(now)); nothing to revoke"
                                                           : "the session's tokens have all expired (exp \(until) ≤ now \(now)); nothing to revoke")
            }
            guard until <= now + maxFuture else { throw APIError.invalid("exp", "more than 10 years in the future") }
        case .subject, .client, .grant:
            if exp != nil { throw APIError.invalid("exp", "applies to jti and session revocations; subject, client and grant take before") }
            let cutoff = before ?? nowMillis
            guard cutoff <= nowMillis + maxFuture * 1000 else { throw APIError.invalid("before", "more than 10 years in the future") }
            guard cutoff > 0 else { throw APIError.invalid("before", "must be a positive Unix time") }
            beforeMillis = cutoff
            until = untilSecond(cutoffMillis: cutoff)
        case .key:
            if exp != nil || before != nil {
                throw APIError.invalid(exp != nil ? "exp" : "before", "a key revocation takes effect now and has no time")
            }
            until = now
        }
        return RevocationInput(kind: kind, value: value, client: client, issuer: issuer, until: until, beforeMillis: beforeMillis, reason: reason)
    }

    /// A cut-off's `until`: its second rounded up, so that `iat < until` says exactly what
    /// `iat × 1000 < cutoff` says.
    static func untilSecond(cutoffMillis cutoff: Int64) -> Int64 {
        cutoff / 1000 + (cutoff % 1000 == 0 ? 0 : 1)
    }

    /// A revocation's or a lift's reason: at most `maxValueBytes`, without control characters. It
    /// goes into the signed log every gateway syncs, into the audit entry, and onto operators'
    /// terminals and console pages, where a line break or an escape sequence would forge rows.
    static func checkReason(_ reason: String?) throws {
        guard let reason else { return }
        if reason.utf8.count > maxValueBytes { throw APIError.invalid("reason", "longer than \(maxValueBytes) bytes") }
        guard !reason.unicodeScalars.contains(where: isControl) else {
            throw APIError.invalid("reason", "must not contain control characters (line breaks, escape sequences, bidirectional formatting)")
        }
    }

    private static func checkIdentifier(_ text: String, field: String) throws {
        guard text.utf8.count <= maxValueBytes else { throw APIError.invalid(field, "longer than \(maxValueBytes) bytes") }
        guard !text.unicodeScalars.contains(where: isControl) else {
            throw APIError.invalid(field, "must not contain control characters")
        }
    }

    /// A control character (C0, DEL, C1), a line or paragraph separator, or a bidirectional
    /// formatting character: what would break, or reorder, a log line or a console page quoting
    /// the value.
    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .lineSeparator, .paragraphSeparator: return true
        default: return scalar.properties.isBidiControl
        }
    }

    /// Unix seconds (a fraction keeps its milliseconds), an RFC 3339 time (likewise), or `now`;
    /// answered in Unix milliseconds.
    static func timestampMillis(_ value: JSONValue?, field: String, nowMillis: Int64) throws -> Int64? {
        guard let value else { return nil }
        if case .integer(let seconds) = value {
            let (millis, overflow) = seconds.multipliedReportingOverflow(by: 1000)
            guard !overflow else { throw APIError.invalid(field, "out of range") }
            return millis
        }
        if case .number(let seconds) = value { return try millis(seconds, field: field) }
        guard let text = value.stringValue else { throw APIError.invalid(field, "expected Unix seconds or an RFC 3339 time") }
        if text == "now" { return nowMillis }
        switch RFC3339Time.millis(text) {
        case .success(let millis): return millis
        case .failure(let error): throw APIError.invalid(field, "expected Unix seconds, an RFC 3339 time or \"now\", got '\(text)': \(error)")
        }
    }

    /// Seconds to the nearest millisecond (a decimal fraction is rarely exact in binary).
    private static func millis(_ seconds: Double, field: String) throws -> Int64 {
        let millis = (seconds * 1000).rounded()
        guard millis.isFinite, abs(millis) < 9.0e15 else { throw APIError.invalid(field, "out of range") }
        return Int64(millis)
    }
}
