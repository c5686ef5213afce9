import ArgumentParser
import PortcullisConfig
import PortcullisControl

struct ControlCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "control",
        abstract: "Run the control-plane node: admin API, cluster metrics, optional authorization server.",
        discussion: """
        State lives in Redis, so two control planes can run side by side. SIGTERM or SIGINT stops it. SIGHUP reloads \
        the TLS certificates, admin_tokens, admin_auth, max_wait and rate_limits whole, or nothing when any of it fails \
        or a setting read only at start changed. Loading the file (and --check) reads the certificates and keys.

        Exit status: 0 ok; 1 the node failed after start (e.g. a port it cannot bind); 2 usage or configuration.
        """,
        version: PortcullisVersion.current
    )

    @Option(name: .long, help: "Path to the control plane's YAML configuration.")
    var config: String

    @OptionGroup var options: NodeOptions

    func run() async throws {
        let parsed = try NodeProcess.load("control") { try ControlConfig.load(file: config) }
        if options.check {
            try await NodeProcess.check("control", secretFiles: parsed.secretFiles) { try parsed.checkStartFiles() }
            print("configuration OK: \(parsed.issuers.count) issuers, \(parsed.adminCredentials.count) admin tokens, authorization server \(parsed.authorizationServer == nil ? "off" : "on")")
            return
        }
        try await NodeProcess.run("control", node: parsed.nodeID, options: options, secretFiles: parsed.secretFiles) { registry, logger in
            ControlNode(config: parsed, registry: registry, logger: logger)
        }
    }
}
