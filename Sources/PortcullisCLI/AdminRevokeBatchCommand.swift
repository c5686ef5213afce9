import ArgumentParser
import Foundation
import PortcullisJOSE

struct AdminRevokeBatch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke-batch",
        abstract: "Revoke many tokens, sessions, subjects, clients or keys in one atomic call (mass revocation).",
        discussion: """
        Reads one revocation per line from --file (or standard input with --file -): either a JSON object \
        as POST /v1/revocations takes it (a grant, which names a subject and a client, only so), or `KIND VALUE` \
        (kind: jti, session, subject, client, key). Blank lines and \
        lines starting with # are ignored. At most 10 000 per call. With --wait, returns once every live \
        gateway applied the whole batch.
        """
    )

    @OptionGroup var connection: AdminConnection
    @Option(help: "The file to read, or - for standard input.") var file: String
    @Option(help: "Why (kept with every revocation that does not give its own).") var reason: String?
    @Flag(help: "Wait until every live gateway applied the batch and print per-node propagation.") var wait = false
    @Option(help: "Longest --wait, e.g. 10s.") var waitTimeout: String = "10s"

    func run() async throws {
        let text: String
        if file == "-" {
            text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        } else {
            guard let contents = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ValidationError("cannot read \(file)")
            }
            text = contents
        }
        let items = try Self.parse(text, file: file == "-" ? "standard input" : file, reason: reason)
        guard !items.isEmpty else { throw ValidationError("no revocations in \(file == "-" ? "standard input" : file)") }
        try await postRevocation(connection: connection, path: "/v1/revocations/batch", body: ["revocations": .array(items)],
                                 wait: wait, waitTimeout: waitTimeout) { json in
            "revoked \(AdminOutput.text(json["count"])) in \(json["changes"]?.arrayValue?.count ?? 0) changes (sequences \(AdminOutput.text(json["first_sequence"]))–\(AdminOutput.text(json["last_sequence"])))"
        }
    }

    /// One revocation per line; an error names the line.
    static func parse(_ text: String, file: String, reason: String?) throws -> [JSONValue] {
        var items: [JSONValue] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            var object: [String: JSONValue]
            if line.hasPrefix("{") {
                guard case .object(let members)? = try? JOSEJSONReader.parse(Array(line.utf8)) else {
                    throw ValidationError("\(file):\(index + 1): not a JSON object")
                }
                object = members
            } else {
                let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
                guard parts.count == 2, ["jti", "session", "subject", "client", "key"].contains(parts[0]) else {
                    throw ValidationError("\(file):\(index + 1): expected `KIND VALUE` (kind: jti, session, subject, client, key) or a JSON object")
                }
                object = ["kind": .string(parts[0]), "value": .string(parts[1].trimmingCharacters(in: .whitespaces))]
            }
            if object["reason"] == nil, let reason { object["reason"] = .string(reason) }
            items.append(.object(object))
        }
        return items
    }
}
