import ArgumentParser
import Logging
import Metrics
import PortcullisConfig
import PortcullisControl
import PortcullisObservability
import Prometheus
import ServiceLifecycle

struct ControlCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "control",
        abstract: "Run the control-plane node: admin API, cluster metrics, optional authorization server.",
        discussion: "State lives in Redis, so two control planes can run side by side. SIGTERM or SIGINT stops it.",
        version: PortcullisVersion.current
    )

    @Option(name: .long, help: "Path to the control plane's YAML configuration.")
    var config: String

    @Option(name: .long, help: "Log format: text or json.")
    var logFormat: LogFormat = .text

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Flag(name: .long, help: "Check the configuration and exit.")
    var check = false

    func run() async throws {
        let parsed: ControlConfig
        do {
            parsed = try ControlConfig.load(file: config)
        } catch {
            printError("portcullis control: configuration error: \(error)")
            throw ExitCode(2)
        }
        if check {
            print("configuration OK: \(parsed.issuers.count) issuers, \(parsed.adminCredentials.count) admin tokens, authorization server \(parsed.authorizationServer == nil ? "off" : "on")")
            return
        }
        logFormat.bootstrap(level: logLevel)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PortcullisMetricsFactory(registry: registry))
        let logger = Logger(label: "portcullis.control")
        let node = ControlNode(config: parsed, registry: registry, logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: node)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        do {
            try await group.run()
        } catch {
            logger.critical("control plane stopped: \(error)")
            throw ExitCode(1)
        }
    }
}
