import CoreMetrics
import Prometheus

/// A swift-metrics factory over one Prometheus registry that attaches help text from
/// `MetricCatalog`. Library modules (JOSE, cluster state) use the facade; node binaries
/// bootstrap this once and expose `registry` on `/metrics`.
public struct PortcullisMetricsFactory: MetricsFactory {
    /// The registry every metric is created in; the one to serve on `/metrics`.
    public let registry: PrometheusCollectorRegistry

    /// A factory that creates its metrics in `registry`.
    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    private func help(_ label: String) -> String {
        MetricCatalog.help[label] ?? "Portcullis metric \(label)."
    }

    /// A Prometheus counter named `label`, with `dimensions` as its labels.
    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.counter(label, labels: dimensions, help: help(label))
    }

    /// A Prometheus counter named `label`, with `dimensions` as its labels.
    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.counter(label, labels: dimensions, help: help(label))
    }

    /// With `aggregate`, a value histogram with buckets at the powers of ten from 0.001 to 1000;
    /// otherwise a gauge holding the last value recorded.
    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        if aggregate {
            return registry.valueHistogram(label, labels: dimensions,
                                          buckets: [0.001, 0.01, 0.1, 1, 10, 100, 1000], help: help(label))
        }
        return registry.gauge(label, labels: dimensions, help: help(label))
    }

    /// A Prometheus gauge named `label`, with `dimensions` as its labels.
    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.gauge(label, labels: dimensions, help: help(label))
    }

    /// A duration histogram named `label`, with the buckets `MetricCatalog.durationBuckets` lists for
    /// it, or buckets from 1 ms to 10 s when it lists none.
    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        let buckets = MetricCatalog.durationBuckets[label] ?? [
            .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(50), .milliseconds(100),
            .milliseconds(500), .seconds(1), .seconds(5), .seconds(10),
        ]
        return registry.durationHistogram(label, labels: dimensions, buckets: buckets, help: help(label))
    }

    /// Removes the counter from `registry`; a handler of another kind is ignored.
    public func destroyCounter(_ handler: any CounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    /// Removes the counter from `registry`; a handler of another kind is ignored.
    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    /// Removes the gauge or value histogram from `registry`; a handler of another kind is ignored.
    public func destroyRecorder(_ handler: any RecorderHandler) {
        if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
        if let histogram = handler as? ValueHistogram { registry.unregisterValueHistogram(histogram) }
    }

    /// Removes the gauge from `registry`; a handler of another kind is ignored.
    public func destroyMeter(_ handler: any MeterHandler) {
        if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
    }

    /// Removes the duration histogram from `registry`; a handler of another kind is ignored.
    public func destroyTimer(_ handler: any TimerHandler) {
        if let histogram = handler as? DurationHistogram { registry.unregisterDurationHistogram(histogram) }
    }
}
