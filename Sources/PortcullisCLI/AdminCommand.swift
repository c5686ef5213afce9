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

    @Flag(name: .long, help: "Print the API's JSON instead of a table.")
    var json = false

    func client() throws -> AdminClient {
        let environment = ProcessInfo.processInfo.environment
        let base = endpoint ?? environment["PORTCULLIS_ADMIN_URL"] ?? "http://127.0.0.1:9001"
        guard let token = token ?? environment["PORTCULLIS_ADMIN_TOKEN"], !token.isEmpty else {
            throw ValidationError("no admin token: pass --token or set PORTCULLIS_ADMIN_TOKEN")
        }
        return AdminClient(baseURL: base.hasSuffix("/") ? String(base.dropLast()) : base, token: token)
    }
}
