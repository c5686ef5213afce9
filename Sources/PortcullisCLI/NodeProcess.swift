import ArgumentParser
import Logging
import Metrics
import PortcullisCluster
import PortcullisConfig
import PortcullisGateway
import PortcullisObservability
import Prometheus
import ServiceLifecycle

/// Options every long-running node command takes.
struct NodeOptions: ParsableArguments {
    @Option(name: .long, help: "Log format: text or json.")
    var logFormat: LogFormat = .text

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Flag(name: .long, help: "Load the configuration as start-up would (certificates, key files, secrets, URLs) without binding ports or connecting, then exit: 0 when it would start, 2 when not.")
    var check = false
}

/// How a node process starts and stops, the same for gateways and control planes: a config that
/// fails to load exits 2 with file:line:key; logging and metrics are bootstrapped once; the node
/// runs as a swift-service-lifecycle service that SIGTERM and SIGINT stop gracefully.
enum NodeProcess {
    /// Loads the configuration or exits 2 with the error.
    static func load<Config>(_ role: String, _ body: () throws -> Config) throws -> Config {
        do {
            return try body()
        } catch {
            printError("portcullis \(role): configuration error: \(error)")
            throw ExitCode(2)
        }
    }

    /// `--check` beyond parsing (files the configuration names, secrets, URLs), or exits 2 with the
    /// error; then prints a warning for each secret file others may open.
    static func check(_ role: String, secretFiles: [SecretFile], _ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch {
            printError("portcullis \(role): configuration error: \(error)")
            throw ExitCode(2)
        }
        for warning in secretFiles.compactMap(\.warning) { printError("portcullis \(role): warning: \(warning)") }
    }

    /// Whether a node's failure is its configuration's (exit 2) rather than the machine's (exit 1).
    static func isConfiguration(_ error: any Error) -> Bool {
        if error is ConfigError || error is StartOnlyChanges { return true }
        return (error as? GatewayError)?.isConfiguration ?? false
    }

    /// Bootstraps logging and metrics (`portcullis_build_info` names `node`), then runs the
    /// service built by `makeService` until a shutdown signal; a failure exits 1 after logging it
    /// (2 when a file the configuration names cannot be used, as `--check` would have said).
    static func run(_ role: String, node: String, options: NodeOptions, secretFiles: [SecretFile],
                    makeService: (_ registry: PrometheusCollectorRegistry, _ logger: Logger) -> any Service) async throws {
        options.logFormat.bootstrap(level: options.logLevel)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PortcullisMetricsFactory(registry: registry))
        BuildInfo.register(in: registry, version: PortcullisVersion.current, revision: PortcullisVersion.revision, role: role, node: node)
        let logger = Logger(label: "portcullis.\(role)")
        for warning in secretFiles.compactMap(\.warning) { logger.warning("secret file readable by others: \(warning)") }
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: makeService(registry, logger))],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        // Log lines still waiting for the writer thread (access and process log) are written before
        // the process exits.
        defer { LineWriter.standardError.flush() }
        do {
            try await group.run()
        } catch {
            logger.critical("\(role) stopped: \(error)")
            throw ExitCode(isConfiguration(error) ? 2 : 1)
        }
    }
}

extension LogFormat: ExpressibleByArgument {}
extension Logger.Level: @retroactive ExpressibleByArgument {}
