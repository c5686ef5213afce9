import Prometheus

/// Registration with help text under the full metric name (swift-prometheus wants the name
/// split into a descriptor; our names are already complete).
extension PrometheusCollectorRegistry {
    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// The counter `name` (the full metric name) with `labels`, registered with `help` as its help text.
    public func counter(_ name: String, labels: [(String, String)] = [], help: String) -> Prometheus.Counter {
        makeCounter(descriptor: Self.descriptor(name, help), labels: labels)
    }

    /// The gauge `name` (the full metric name) with `labels`, registered with `help` as its help text.
    public func gauge(_ name: String, labels: [(String, String)] = [], help: String) -> Prometheus.Gauge {
        makeGauge(descriptor: Self.descriptor(name, help), labels: labels)
    }

    /// The duration histogram `name` (the full metric name) with `labels` and `buckets`, registered
    /// with `help` as its help text.
    public func durationHistogram(_ name: String, labels: [(String, String)] = [], buckets: [Duration], help: String) -> DurationHistogram {
        makeDurationHistogram(descriptor: Self.descriptor(name, help), labels: labels, buckets: buckets)
    }

    /// The value histogram `name` (the full metric name) with `labels` and `buckets`, registered with
    /// `help` as its help text.
    public func valueHistogram(_ name: String, labels: [(String, String)] = [], buckets: [Double], help: String) -> ValueHistogram {
        makeValueHistogram(descriptor: Self.descriptor(name, help), labels: labels, buckets: buckets)
    }
}
