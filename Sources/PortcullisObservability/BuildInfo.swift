import Prometheus

/// `portcullis_build_info{version,revision,role,node} 1`: which release each node runs, and which
/// node id a scrape target is (join on `instance` to put node ids on other series).
public enum BuildInfo {
    /// The gauge's name, `portcullis_build_info`.
    public static let metricName = "portcullis_build_info"

    /// Creates the gauge in `registry` with these label values (`node` is the node id) and sets it to 1.
    public static func register(in registry: PrometheusCollectorRegistry, version: String, revision: String, role: String, node: String) {
        registry.gauge(metricName, labels: [("version", version), ("revision", revision), ("role", role), ("node", node)],
                       help: MetricCatalog.help[metricName] ?? metricName).set(1.0)
    }
}
