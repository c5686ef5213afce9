import ArgumentParser
import Logging
import Metrics
import PortcullisConfig
import PortcullisGateway
import PortcullisObservability
import Prometheus
import ServiceLifecycle

struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Run one stateless gateway node.",
        discussion: "SIGTERM or SIGINT drains in-flight requests and exits 0; SIGHUP reloads routes, the TLS certificate and key files.",
        version: PortcullisVersion.current
    )

    @Option(name: .long, help: "Path to the gateway's YAML configuration.")
    var config: String

    @Option(name: .long, help: "Log format: text or json.")
    var logFormat: LogFormat = .text

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Option(name: .long, help: "Override `listen` (host:port), e.g. to run several nodes from one file.")
    var listen: String?

    @Option(name: .long, help: "Override `admin_listen` (host:port).")
    var adminListen: String?

    @Option(name: .long, help: "Override `node_id`.")
    var nodeId: String?

    @Flag(name: .long, help: "Check the configuration and exit.")
    var check = false

    func run() async throws {
        var parsed: GatewayConfig
        do {
            parsed = try GatewayConfig.load(file: config)
            if let listen {
                guard let address = HostPort(parsing: listen) else { throw ValidationError("--listen: expected host:port, got '\(listen)'") }
                parsed.listen = address
            }
            if let adminListen {
                guard let address = HostPort(parsing: adminListen) else { throw ValidationError("--admin-listen: expected host:port, got '\(adminListen)'") }
                parsed.adminListen = address
            }
            if let nodeId { parsed.nodeID = nodeId }
        } catch {
            printError("portcullis gateway: configuration error: \(error)")
            throw ExitCode(2)
        }
        if check {
            print("configuration OK: \(parsed.routes.count) routes, \(parsed.issuers.count) issuers")
            return
        }
        logFormat.bootstrap(level: logLevel)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PortcullisMetricsFactory(registry: registry))
        let logger = Logger(label: "portcullis.gateway")
        let node = GatewayNode(config: parsed, registry: registry, logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: node)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        do {
            try await group.run()
        } catch {
            logger.critical("gateway stopped: \(error)")
            throw ExitCode(1)
        }
    }
}

extension LogFormat: ExpressibleByArgument {}
extension Logger.Level: @retroactive ExpressibleByArgument {}
