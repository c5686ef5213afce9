/// Help text for metrics that library modules create through the swift-metrics facade (which
/// carries no help text). `promtool check metrics` rejects metrics without help, and
/// swift-prometheus insists that one name always has one help text, so it lives here, once.
public enum MetricCatalog {
    /// Help text by full metric name. A metric not listed here gets a generic help text from
    /// `PortcullisMetricsFactory`.
    public static let help: [String: String] = [
        "portcullis_build_info": "Always 1; the labels name the release (version, revision), the role and the node id of this process.",
        "portcullis_jwks_fetch_total": "JWKS fetches by issuer and outcome.",
        "portcullis_keyset_age_seconds": "Seconds since the issuer's key set was last loaded or confirmed.",
        "portcullis_keyset_keys": "Usable keys in the issuer's current key set on this node.",
        "portcullis_keyset_version_info": "Always 1; the version of the issuer's key set this node holds.",
        "portcullis_log_lines_dropped_total": "Log lines (access log and process log) dropped because stderr did not keep up (8 MiB of lines were waiting to be written).",
        "portcullis_token_cache_entries": "Entries in the verified-token cache.",
        "portcullis_token_cache_lookups_total": "Verified-token cache lookups by result (hit, miss).",
        "portcullis_revocation_propagation_seconds": "Time from a revocation's durable write in Redis to this node applying it.",
        "portcullis_revocation_applied_sequence": "Highest revocation sequence number this node has applied.",
        "portcullis_revocation_entries": "Revocation entries held in memory, by kind.",
        "portcullis_revocation_staleness_seconds": "Seconds since this node last confirmed its revocation state with Redis.",
        "portcullis_revocation_failing_closed": "1 while this node refuses authenticated requests because its revocation state is older than max_staleness, else 0.",
        "portcullis_revocation_resyncs_total": "Full revocation resyncs, by cause.",
        "portcullis_redis_connected": "1 when this node's Redis connections are up, else 0.",
        "portcullis_redis_connect_failures_total": "Failed attempts to open a Redis connection, by kind (tls, auth, refused, timeout, sentinel, ...).",
        "portcullis_ratelimit_mode": "1 for the node's current rate-limit mode (cluster, fallback, local).",
        "portcullis_ratelimit_sync_total": "Rate-limit counter syncs with Redis by outcome.",
        "portcullis_cluster_live_nodes": "Live gateway nodes in the membership registry, as the control plane sees them.",
        "portcullis_ratelimit_live_nodes": "Live gateway nodes this node sees in the membership registry (at least 1); fallback rate limits divide by it.",
        "portcullis_keyset_events_rejected_total": "Key-set records from Redis refused: MAC, another issuer's slot, or a rolled-back serial.",
        "portcullis_cluster_tampering_total": "Writes to Redis made without the cluster secret that this node detected and ignored, by key family.",
    ]

    /// Buckets for duration histograms created through the facade, by metric name.
    public static let durationBuckets: [String: [Duration]] = [
        "portcullis_revocation_propagation_seconds": [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(3),
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
        ],
    ]
}
