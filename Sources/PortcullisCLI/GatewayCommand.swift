import ArgumentParser
import PortcullisCluster
import PortcullisConfig
import PortcullisGateway

struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Run one stateless gateway node.",
        discussion: """
        SIGTERM or SIGINT drains in-flight requests and exits 0. SIGHUP reloads the configuration file whole \
        (issuers and their keys, routes and their policies, trusted proxies, TLS certificates) or, when any of it \
        fails or a setting read only at start changed, not at all (logged, counted in portcullis_config_reloads_total). \
        --check builds all of it (certificates, key files, secrets, URLs) without binding ports or connecting.

        Exit status: 0 ok; 1 the node failed after start (e.g. a port it cannot bind); 2 usage or configuration.
        """,
        version: PortcullisVersion.current
    )

    @Option(name: .long, help: "Path to the gateway's YAML configuration.")
    var config: String

    @Option(name: .long, help: "Override `listen` (host:port), e.g. to run several nodes from one file.")
    var listen: String?

    @Option(name: .long, help: "Override `admin_listen` (host:port).")
    var adminListen: String?

    @Option(name: .long, help: "Override `node_id`.")
    var nodeId: String?

    @OptionGroup var options: NodeOptions

    func run() async throws {
        let parsed = try NodeProcess.load("gateway") {
            var parsed = try GatewayConfig.load(file: config)
            if let listen {
                guard let address = HostPort(parsing: listen) else { throw ValidationError("--listen: expected host:port, got '\(listen)'") }
                parsed.listen = address
            }
            if let adminListen {
                guard let address = HostPort(parsing: adminListen) else { throw ValidationError("--admin-listen: expected host:port, got '\(adminListen)'") }
                parsed.adminListen = address
            }
            if let nodeId {
                if let problem = NodeID.problem(nodeId) { throw ValidationError("--node-id: \(problem)") }
                parsed.nodeID = nodeId
            }
            return parsed
        }
        if options.check {
            try await NodeProcess.check("gateway", secretFiles: parsed.secretFiles) { try await GatewayNode.check(parsed) }
            print("configuration OK: \(parsed.routes.count) routes, \(parsed.issuers.count) issuers")
            return
        }
        try await NodeProcess.run("gateway", node: parsed.nodeID, options: options, secretFiles: parsed.secretFiles) { registry, logger in
            GatewayNode(config: parsed, registry: registry, logger: logger)
        }
    }
}
