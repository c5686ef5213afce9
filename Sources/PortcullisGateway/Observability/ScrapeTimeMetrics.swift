import PortcullisJOSE
import PortcullisObservability
import Prometheus
import Synchronization

/// Metrics read from the node's state when `/metrics` is scraped, so the request path does no
/// extra work for them: the verified-token cache's size and lookups (the cache counts hits and
/// misses under its shard locks anyway), each issuer's key count and version, and the log lines
/// dropped because stderr did not keep up (`LineWriter`).
final class ScrapeTimeMetrics: Sendable {
    private struct State {
        var hits = 0
        var misses = 0
        var droppedLines = 0
        var keysets: [String: (keys: Gauge, version: String, info: Gauge)] = [:]
    }

    private let registry: PrometheusCollectorRegistry
    private let keys: KeySetStore
    private let cache: VerifiedTokenCache?
    private let cacheEntries: Gauge?
    private let cacheHits: Counter?
    private let cacheMisses: Counter?
    private let droppedLines: Counter
    private let logWriter: LineWriter
    private let state = Mutex(State())

    init(registry: PrometheusCollectorRegistry, keys: KeySetStore, cache: VerifiedTokenCache?, logWriter: LineWriter = .standardError) {
        self.registry = registry
        self.logWriter = logWriter
        droppedLines = registry.counter("portcullis_log_lines_dropped_total", labels: [], help: Self.help("portcullis_log_lines_dropped_total"))
        self.keys = keys
        self.cache = cache
        let hasCache = cache != nil
        cacheEntries = hasCache ? registry.gauge("portcullis_token_cache_entries", help: Self.help("portcullis_token_cache_entries")) : nil
        cacheHits = hasCache ? registry.counter("portcullis_token_cache_lookups_total", labels: [("result", "hit")],
                                                help: Self.help("portcullis_token_cache_lookups_total")) : nil
        cacheMisses = hasCache ? registry.counter("portcullis_token_cache_lookups_total", labels: [("result", "miss")],
                                                  help: Self.help("portcullis_token_cache_lookups_total")) : nil
    }

    /// Brings the scrape-time series up to date; called before each `/metrics` rendering.
    func update() {
        let snapshot = keys.snapshot()
        let cacheTotals = cache.map { (entries: $0.count, hits: $0.hits, misses: $0.misses) }
        let dropped = logWriter.droppedLines
        state.withLock { state in
            droppedLines.increment(by: Int64(max(0, dropped - state.droppedLines)))
            state.droppedLines = max(state.droppedLines, dropped)
            if let cacheTotals {
                cacheEntries?.set(Double(cacheTotals.entries))
                // The cache's totals only grow; a smaller total is a new cache, counted from zero.
                cacheHits?.increment(by: Int64(cacheTotals.hits >= state.hits ? cacheTotals.hits - state.hits : cacheTotals.hits))
                cacheMisses?.increment(by: Int64(cacheTotals.misses >= state.misses ? cacheTotals.misses - state.misses : cacheTotals.misses))
                (state.hits, state.misses) = (cacheTotals.hits, cacheTotals.misses)
            }
            for (issuer, entry) in snapshot.entries {
                let version = entry.version ?? "none"
                var current = state.keysets[issuer] ?? (
                    keys: registry.gauge("portcullis_keyset_keys", labels: [("issuer", issuer)], help: Self.help("portcullis_keyset_keys")),
                    version: version, info: versionInfo(issuer: issuer, version: version))
                if current.version != version {
                    registry.unregisterGauge(current.info)
                    current.version = version
                    current.info = versionInfo(issuer: issuer, version: version)
                }
                current.keys.set(Double(entry.keySet.count))
                state.keysets[issuer] = current
            }
            // A set dropped (past `max_stale`) has no version and no keys.
            for (issuer, gone) in state.keysets where snapshot.entries[issuer] == nil {
                gone.keys.set(0.0)
                registry.unregisterGauge(gone.info)
                state.keysets[issuer] = nil
            }
        }
    }

    private func versionInfo(issuer: String, version: String) -> Gauge {
        let gauge = registry.gauge("portcullis_keyset_version_info", labels: [("issuer", issuer), ("version", version)],
                                   help: Self.help("portcullis_keyset_version_info"))
        gauge.set(1.0)
        return gauge
    }

    private static func help(_ name: String) -> String { MetricCatalog.help[name] ?? name }
}
