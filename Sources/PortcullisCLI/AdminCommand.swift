import ArgumentParser
import Foundation
import PortcullisConfig

struct AdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin",
        abstract: "Drive the control plane's admin API.",
        discussion: """
        The endpoint and credential come from --endpoint/--token-file or PORTCULLIS_ADMIN_URL/PORTCULLIS_ADMIN_TOKEN. \
        A token is sent over plain http only to a loopback address. \
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

    @Option(name: .long, help: "Admin bearer token (default: $PORTCULLIS_ADMIN_TOKEN). Other local users can read it in the process list: prefer --token-file or the environment.")
    var token: String?

    @Option(name: .customLong("token-file"), help: "File holding the admin bearer token (default: $PORTCULLIS_ADMIN_TOKEN_FILE).")
    var tokenFile: String?

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
        if token != nil && tokenFile != nil { throw ValidationError("--token and --token-file: give one") }
        if token != nil {
            printError("warning: --token shows the admin token to every local user in the process list while this runs; use --token-file or PORTCULLIS_ADMIN_TOKEN_FILE")
        }
        let token = try (token ?? tokenFile.map(Self.readToken) ?? environment["PORTCULLIS_ADMIN_TOKEN"]
            ?? environment["PORTCULLIS_ADMIN_TOKEN_FILE"].map(Self.readToken)).flatMap { $0.isEmpty ? nil : $0 }
        // A client certificate may be the whole credential (`admin_auth: certificate`).
        guard token != nil || tls.certificate != nil else {
            throw ValidationError("no admin credential: pass --token-file or --token (or set PORTCULLIS_ADMIN_TOKEN), or --cert and --key")
        }
        guard let url = URL(string: base), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https", url.host != nil else {
            throw ValidationError("--endpoint \(base): expected an http:// or https:// URL")
        }
        if token != nil, scheme == "http", !Self.isLoopback(url.host ?? "") {
            throw ValidationError("refusing to send the admin token in clear to \(url.host ?? base): use an https:// endpoint (plain http is for loopback only)")
        }
        return AdminClient(baseURL: base.hasSuffix("/") ? String(base.dropLast()) : base, token: token, tls: tls)
    }

    private static func readToken(_ path: String) throws -> String {
        do {
            return try ConfigFile.text(atPath: path).trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            throw ValidationError("--token-file \(path): \(error.reason)")
        }
    }

    /// 127.0.0.0/8, ::1 and `localhost`: where a token in clear stays on the machine. Only
    /// address literals (`inet_pton`, which takes no `+1` or `0x7f` spellings) and `localhost`:
    /// any other name is resolved, and where it leads is not the command's to know.
    static func isLoopback(_ host: String) -> Bool {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if bare.lowercased() == "localhost" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, bare, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, bare, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { $0.elementsEqual([UInt8](repeating: 0, count: 15) + [1]) }
        }
        return false
    }
}
