import ArgumentParser
import PortcullisJOSE

struct AdminKeys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "keys", abstract: "Issuers and their published key sets.")

    @OptionGroup var connection: AdminConnection
    @Argument(help: "Show one issuer (by name), with the built-in issuer's signing keys.") var issuer: String?

    func run() async throws {
        let client = try connection.client()
        let reply = try await adminCall { try await client.get(issuer.map { "/v1/keys/" + AdminClient.escape($0) } ?? "/v1/keys") }
        if connection.json { print(reply.body, terminator: ""); return }
        let issuers = issuer == nil ? (reply.json["issuers"]?.arrayValue ?? []) : [reply.json]
        let rows = issuers.map { entry in
            [
                AdminOutput.text(entry["name"]), AdminOutput.text(entry["source"]?["type"]), AdminOutput.text(entry["version"]),
                AdminOutput.text(entry["kids"]), AdminOutput.duration(seconds: entry["age_seconds"]),
                AdminOutput.text(entry["last_fetch"]?["outcome"]), AdminOutput.text(entry["errors_total"]), AdminOutput.text(entry["nodes_current"]),
            ]
        }
        print(AdminOutput.table(["ISSUER", "SOURCE", "VERSION", "KIDS", "AGE", "LAST_FETCH", "ERRORS", "NODES_CURRENT"], rows))
        for entry in issuers {
            if let error = entry["last_fetch"]?["error"]?.stringValue { print("\(AdminOutput.text(entry["name"])): last error: \(error)") }
            if let keys = entry["signing_keys"]?.arrayValue, !keys.isEmpty {
                print("")
                print(AdminOutput.table(["KID", "ALG", "STATE", "CREATED", "ACTIVATED", "RETIRES"], keys.map { key in
                    [AdminOutput.text(key["kid"]), AdminOutput.text(key["alg"]), AdminOutput.text(key["state"]),
                     AdminOutput.time(millis: key["created_at_ms"]), AdminOutput.time(millis: key["activated_at_ms"]),
                     AdminOutput.time(millis: key["retire_after_ms"])]
                }))
            }
        }
    }
}

struct AdminRefreshKeys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "refresh-keys", abstract: "Fetch an issuer's JWKS now and publish it.")

    @OptionGroup var connection: AdminConnection
    @Argument(help: "Issuer name.") var issuer: String

    func run() async throws {
        let reply = try await adminCall { try await connection.client().post("/v1/keys/" + AdminClient.escape(issuer) + "/refresh") }
        if connection.json { print(reply.body, terminator: ""); return }
        print("\(issuer): published version \(AdminOutput.text(reply.json["version"]))")
    }
}

struct AdminRotate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate",
        abstract: "Rotate the built-in authorization server's signing key.",
        discussion: "The new key is published first; it signs once every live gateway holds it (or the rotation timeout passed). The old key stays published until its tokens have expired."
    )

    @OptionGroup var connection: AdminConnection
    @Option(help: "The built-in issuer's name.") var issuer: String = "builtin"

    func run() async throws {
        let reply = try await adminCall { try await connection.client().post("/v1/keys/" + AdminClient.escape(issuer) + "/rotate") }
        if connection.json { print(reply.body, terminator: ""); return }
        let json = reply.json
        print("signing with \(AdminOutput.text(json["kid"])) (previous: \(AdminOutput.text(json["previous_kid"]))), key-set version \(AdminOutput.text(json["version"]))")
        if json["complete"]?.boolValue == true {
            print("every live gateway held the new key before it signed (waited \(AdminOutput.text(json["waited_ms"])) ms)")
        } else {
            print("gateways without the new key when signing started: \(AdminOutput.text(json["laggards"]))")
        }
    }
}

struct AdminRetireKey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retire-key",
        abstract: "Retire a retiring (or stale pending) signing key of the built-in issuer now: a key revocation, then the JWKS without it."
    )

    @OptionGroup var connection: AdminConnection
    @Option(help: "The built-in issuer's name.") var issuer: String = "builtin"
    @Option(help: "The key id to retire.") var kid: String

    func run() async throws {
        let path = "/v1/keys/" + AdminClient.escape(issuer) + "/kids/" + AdminClient.escape(kid) + "/retire"
        let reply = try await adminCall { try await connection.client().post(path) }
        if connection.json { print(reply.body, terminator: ""); return }
        let json = reply.json
        let revocation = json["revocation_id"]?.stringValue.map { "key revocation \($0)" } ?? "already revoked"
        print("retired \(kid) (\(revocation))")
        if let warning = json["warning"]?.stringValue { printError("warning: \(warning)") }
    }
}
