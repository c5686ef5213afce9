import ArgumentParser
import Foundation
import PortcullisJOSE

struct AdminRevoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke",
        abstract: "Revoke a token (--jti), a session's tokens (--sid), a subject's or client's earlier tokens (--sub/--client with --before; both: the subject's tokens for that client), or a key (--kid).",
        discussion: "With --wait, returns once every live gateway applied the revocation (or --wait-timeout passed) and prints each node's measured propagation time."
    )

    @OptionGroup var connection: AdminConnection
    @Option(help: "Revoke one token by its jti.") var jti: String?
    @Option(help: "Revoke every token carrying this session id (the sid claim) until --exp.") var sid: String?
    @Option(help: "For --jti, the token's exp; for --sid, the latest exp of the session's tokens (Unix seconds); default: now + the cluster's max_token_lifetime.") var exp: Int64?
    @Option(help: "Revoke a subject's tokens issued before --before.") var sub: String?
    @Option(help: "Revoke a client's tokens issued before --before; with --sub, only that subject's tokens for this client (a grant).") var client: String?
    @Option(help: "Cut-off for --sub/--client: Unix seconds (with a fraction for milliseconds, e.g. 1764370000.250), an RFC 3339 time (fractions kept to the millisecond), or now (default, to the millisecond).") var before: String?
    @Option(help: "Revoke a signing key by kid.") var kid: String?
    @Option(help: "Limit a --sub/--client/--kid/--sid revocation to one issuer (iss).") var issuer: String?
    @Option(help: "Why (kept with the revocation and in the audit log).") var reason: String?
    @Flag(help: "Wait until every live gateway applied it and print per-node propagation.") var wait = false
    @Option(help: "Longest --wait, e.g. 10s.") var waitTimeout: String = "10s"

    func validate() throws {
        let given = [jti, sub ?? client, kid, sid].compactMap { $0 }
        guard given.count == 1 else { throw ValidationError("give exactly one of --jti, --sid, --sub (with or without --client), --client, --kid") }
        if exp != nil, jti == nil, sid == nil { throw ValidationError("--exp goes with --jti or --sid") }
        if before != nil, sub == nil, client == nil { throw ValidationError("--before goes with --sub or --client") }
    }

    func run() async throws {
        var body: [String: JSONValue] = [:]
        if let jti { body["kind"] = "jti"; body["value"] = .string(jti) }
        switch (sub, client) {
        case let (sub?, client?): body["kind"] = "grant"; body["value"] = .string(sub); body["client"] = .string(client)
        case let (sub?, nil): body["kind"] = "subject"; body["value"] = .string(sub)
        case let (nil, client?): body["kind"] = "client"; body["value"] = .string(client)
        case (nil, nil): break
        }
        if let kid { body["kind"] = "key"; body["value"] = .string(kid) }
        if let sid { body["kind"] = "session"; body["value"] = .string(sid) }
        if let exp { body["exp"] = .integer(exp) }
        if let before { body["before"] = Self.beforeValue(before) }
        if let issuer { body["issuer"] = .string(issuer) }
        if let reason { body["reason"] = .string(reason) }
        try await postRevocation(connection: connection, path: "/v1/revocations", body: .object(body), wait: wait, waitTimeout: waitTimeout) { json in
            var line = "revoked \(AdminOutput.text(json["kind"])) \(AdminOutput.text(json["value"]))"
            if let client = json["client"]?.stringValue { line += " for client " + client }
            line += " as \(AdminOutput.text(json["id"])) (sequence \(AdminOutput.text(json["sequence"])))"
            if let millis = json["before_ms"]?.int64Value { line += "; tokens issued before \(Self.describe(millis)) are refused" }
            return line
        }
    }

    /// `--before` as the API takes it: whole seconds as an integer, seconds with a fraction as a
    /// number (milliseconds kept), anything else (`now`, RFC 3339) as text.
    static func beforeValue(_ text: String) -> JSONValue {
        if let seconds = Int64(text) { return .integer(seconds) }
        if text.first?.isNumber == true, let seconds = Double(text), seconds.isFinite { return .number(seconds) }
        return .string(text)
    }

    /// Unix milliseconds as RFC 3339 UTC with milliseconds.
    static func describe(_ millis: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date(timeIntervalSince1970: Double(millis) / 1000))
    }
}

/// Posts a revocation call (with `?wait` when asked), prints the API's JSON or `summary` and the
/// propagation, and exits with 3 when the wait ended before every live gateway applied it.
func postRevocation(connection: AdminConnection, path: String, body: JSONValue, wait: Bool, waitTimeout: String,
                    summary: (JSONValue) -> String) async throws {
    let reply = try await adminCall { try await connection.client().post(path + (wait ? "?wait=" + AdminClient.escape(waitTimeout) : ""), body) }
    if connection.json {
        print(reply.body, terminator: reply.body.hasSuffix("\n") ? "" : "\n")
    } else {
        print(summary(reply.json))
        if wait { printPropagation(reply.json["propagation"]) }
    }
    for warning in ([reply.json["warning"]] + (reply.json["warnings"]?.arrayValue ?? []).map { Optional($0) }).compactMap({ $0?.stringValue }) {
        printError("warning: " + warning)
    }
    if wait, reply.json["propagation"]?["complete"]?.boolValue == false { throw ExitCode(3) }
}

/// Prints a propagation object: the summary and one line per live gateway.
func printPropagation(_ propagation: JSONValue?) {
    guard let propagation else { return }
    let applied = AdminOutput.text(propagation["applied"])
    let live = AdminOutput.text(propagation["live_nodes"])
    let waited = propagation["waited_ms"].map { " after \(AdminOutput.text($0)) ms" } ?? ""
    if propagation["complete"]?.boolValue == true {
        print("propagation: \(applied)/\(live) live gateways applied it\(waited)")
    } else {
        print("propagation: only \(applied)/\(live) live gateways applied it\(waited); laggards: \(AdminOutput.text(propagation["laggards"]))")
    }
    let rows = (propagation["nodes"]?.arrayValue ?? []).map { node -> [String] in
        let latency = node["latency_ms"]?.doubleValue.map { String(format: "%.2f ms", $0) } ?? (node["applied"]?.boolValue == true ? "(resync)" : "-")
        return [AdminOutput.text(node["id"]), AdminOutput.text(node["applied"]), latency]
    }
    if !rows.isEmpty { print(AdminOutput.table(["NODE", "APPLIED", "PROPAGATION"], rows)) }
}

struct AdminUnrevoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unrevoke",
        abstract: "Lift a subject or client cut-off by its revocation id (jti and key revocations cannot be lifted)."
    )

    @OptionGroup var connection: AdminConnection
    @Argument(help: "The revocation id (rev_…).") var id: String
    @Option(help: "Why (kept in the audit log).") var reason: String?

    func run() async throws {
        let query = reason.map { "?reason=" + AdminClient.escape($0) } ?? ""
        let reply = try await adminCall { try await connection.client().delete("/v1/revocations/" + AdminClient.escape(id) + query) }
        if connection.json { print(reply.body, terminator: "") } else {
            print("lifted \(id): \(AdminOutput.text(reply.json["kind"])) \(AdminOutput.text(reply.json["value"])) (change \(AdminOutput.text(reply.json["id"])), sequence \(AdminOutput.text(reply.json["sequence"])))")
        }
    }
}

struct AdminRevocations: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revocations",
        abstract: "List revocations in force (filters, paging), or show one with its propagation status."
    )

    @OptionGroup var connection: AdminConnection
    @Argument(help: "A revocation id: show it with its per-node propagation.") var id: String?
    @Option(help: "Only this kind: jti, subject, client, grant, key, session.") var kind: String?
    @Option(help: "Only this value (jti, subject, client id or kid; a grant's subject).") var value: String?
    @Option(help: "Start after this sequence number (paging).") var after: Int64?
    @Option(help: "At most this many (1-1000).") var limit: Int = 100

    func run() async throws {
        let client = try connection.client()
        if let id {
            let reply = try await adminCall { try await client.get("/v1/revocations/" + AdminClient.escape(id)) }
            if connection.json { print(reply.body, terminator: ""); return }
            let json = reply.json
            print(AdminOutput.table(["ID", "SEQ", "OP", "KIND", "VALUE", "ISSUER", "UNTIL", "BEFORE_MS", "ACTOR", "REASON"], [revocationRow(json)]))
            printPropagation(json["propagation"])
            return
        }
        var query = ["limit=\(limit)"]
        if let kind { query.append("kind=" + AdminClient.escape(kind)) }
        if let value { query.append("value=" + AdminClient.escape(value)) }
        if let after { query.append("after=\(after)") }
        let reply = try await adminCall { try await client.get("/v1/revocations?" + query.joined(separator: "&")) }
        if connection.json { print(reply.body, terminator: ""); return }
        let rows = (reply.json["items"]?.arrayValue ?? []).map(revocationRow)
        print(AdminOutput.table(["ID", "SEQ", "OP", "KIND", "VALUE", "ISSUER", "UNTIL", "BEFORE_MS", "ACTOR", "REASON"], rows))
        if let next = reply.json["next_after"]?.int64Value { print("more: --after \(next)") }
    }

    /// A grant's value names its client too: `alice (client web-app)`.
    private func revocationRow(_ json: JSONValue) -> [String] {
        var row = ["id", "sequence", "operation", "kind", "value", "issuer", "until", "before_ms", "actor", "reason"].map { AdminOutput.text(json[$0]) }
        if let client = json["client"]?.stringValue { row[4] += " (client \(AdminOutput.text(.string(client))))" }
        return row
    }
}
