import Foundation
import Logging
import Prometheus

/// What a node records about SIGHUP reloads of its configuration file:
/// `portcullis_config_reloads_total{result="success"|"failure"}` and
/// `portcullis_config_last_reload_success_timestamp_seconds` (the start counts as the first
/// successful load, so the gauge says since when the running configuration has been in force).
public final class ConfigReloads: Sendable {
    private let successes: Prometheus.Counter
    private let failures: Prometheus.Counter
    private let lastSuccess: Prometheus.Gauge
    private let logger: Logger

    /// Name of the reload counter, labelled `result="success"` or `result="failure"`.
    public static let reloadsMetric = "portcullis_config_reloads_total"
    /// Name of the gauge holding the Unix time, in seconds, at which the configuration in force was loaded.
    public static let lastSuccessMetric = "portcullis_config_last_reload_success_timestamp_seconds"

    /// Creates both metrics in `registry` and records now as the last successful load (the start
    /// counts as one). Reloads are logged to `logger`.
    public init(registry: PrometheusCollectorRegistry, logger: Logger) {
        let help = "SIGHUP reloads of the configuration file, by result: success (the whole new configuration is in force) or failure (nothing changed)."
        successes = registry.counter(Self.reloadsMetric, labels: [("result", "success")], help: help)
        failures = registry.counter(Self.reloadsMetric, labels: [("result", "failure")], help: help)
        lastSuccess = registry.gauge(Self.lastSuccessMetric,
                                     help: "Unix time at which the configuration in force was loaded: the start, or the last successful reload.")
        self.logger = logger
        lastSuccess.set(Date().timeIntervalSince1970)
    }

    /// Records a reload that put a whole new configuration in force.
    public func succeeded(file: String, summary: Logger.Metadata = [:]) {
        successes.increment()
        lastSuccess.set(Date().timeIntervalSince1970)
        logger.info("configuration reloaded", metadata: summary.merging(["file": "\(file)"]) { first, _ in first })
    }

    /// Records a reload that changed nothing, with the reason (which names file, line and key
    /// where it can).
    public func failed(file: String, error: any Error) {
        failures.increment()
        logger.error("reload failed; nothing changed, the previous configuration stays in force",
                     metadata: ["file": "\(file)", "error": "\(error)"])
    }
}
