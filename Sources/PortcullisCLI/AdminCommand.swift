import ArgumentParser
import Foundation
import PortcullisConfig

struct AdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin",
        abstract: "Drive the control plane's admin API.",
        discussion: """
        The endpoint and credential come from --endpoint/--token or PORTCULLIS_ADMIN_URL/PORTCULLIS_ADMIN_TOKEN. \
        Output is a table by default; --json prints the API's JSON.

        Exit status: 0 ok; 1 the API refused or failed; 3 a --wait ended before every live gateway applied the change.
        """,
        version: PortcullisVersion.current,
        subcommands: [
            AdminRevoke.self, AdminRevokeBatch.self, AdminUnrevoke.self, AdminRevocations.self, AdminNodes.self, AdminKeys.self,
            AdminRefreshKeys.self, AdminRotate.self, AdminRetireKey.self, AdminStatus.self, AdminRateLimits.self, AdminAudit.self,
        ]
    )
}

/// Where the admin API is and how to authenticate, shared by every `admin` subcommand.
struct AdminConnection: ParsableArguments {
    @Option(name: .long, help: "Admin API base URL (default: $PORTCULLIS_ADMIN_URL, else http://127.0.0.1:9001).")
    var endpoint: String?

    @Option(name: .long, help: "Admin bearer token (default: $PORTCULLIS_ADMIN_TOKEN).")
    var token: String?

    @Option(name: .customLong("ca-file"),
            help: "PEM file of the CA that signed the admin listener's certificate (default: $PORTCULLIS_ADMIN_CA_FILE, else the system's trust store).")
    var caFile: String?

    @Option(name: .customLong("cert"),
            help: "PEM client certificate (chain) for an admin listener that takes certificates (default: $PORTCULLIS_ADMIN_CERT); needs --key.")
    var certificate: String?

    @Option(name: .customLong("key"), help: "PEM private key of --cert (default: $PORTCULLIS_ADMIN_KEY).")
    var privateKey: String?

    @Flag(name: .long, help: "Print the API's JSON instead of a table.")
    var json = false

    func client() throws -> AdminClient {
        let environment = ProcessInfo.processInfo.environment
        let base = endpoint ?? environment["PORTCULLIS_ADMIN_URL"] ?? "http://127.0.0.1:9001"
        let tls = AdminClient.TLSFiles(caFile: caFile ?? environment["PORTCULLIS_ADMIN_CA_FILE"],
                                       certificate: certificate ?? environment["PORTCULLIS_ADMIN_CERT"],
                                       privateKey: privateKey ?? environment["PORTCULLIS_ADMIN_KEY"])
        if (tls.certificate == nil) != (tls.privateKey == nil) { throw ValidationError("--cert and --key go together") }
        for (option, path) in [("--ca-file", tls.caFile), ("--cert", tls.certificate), ("--key", tls.privateKey)] {
            guard let path else { continue }
            do {
                _ = try ConfigFile.text(atPath: path)
            } catch {
                throw ValidationError("\(option) \(path): \(error.reason)")
            }
        }
        do {
            _ = try tls.configuration()
        } catch let failure as AdminClient.Failure {
            throw ValidationError(failure.description)
        }
        let token = (token ?? environment["PORTCULLIS_ADMIN_TOKEN"]).flatMap { $0.isEmpty ? nil : $0 }
        // A client certificate may be the whole credential (`admin_auth: certificate`).
        guard token != nil || tls.certificate != nil else {
            throw ValidationError("no admin credential: pass --token (or set PORTCULLIS_ADMIN_TOKEN), or --cert and --key")
        }
        return AdminClient(baseURL: base.hasSuffix("/") ? String(base.dropLast()) : base, token: token, tls: tls)
    }
}
