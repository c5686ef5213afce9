import Foundation
import PortcullisConfig

/// The `tracing:` section: OpenTelemetry spans for requests, exported over OTLP/HTTP (protobuf).
/// Off by default; off, the gateway starts no span and leaves `traceparent` as the client sent it.
public struct TracingConfig: Sendable, Equatable {
    /// Whether spans are recorded and exported. Default false.
    public var enabled = false
    /// The OTLP/HTTP traces URL, used as given; one without a path gets `/v1/traces` (the OTLP
    /// default). Default `http://127.0.0.1:4318/v1/traces` (a local collector).
    public var endpoint = "http://127.0.0.1:4318/v1/traces"
    /// The share of traces recorded when a request arrives without a `traceparent` (a trace-id
    /// ratio, 0 to 1). A request whose `traceparent` carries the sampled flag is always recorded,
    /// one whose `traceparent` lacks it never is (parent-based sampling). Default 0.01.
    public var samplingRatio = 0.01
    /// `service.name` of the exported resource. Default `portcullis-gateway`.
    public var serviceName = "portcullis-gateway"
    /// How long finished spans wait to be sent in one batch. Default 5 s.
    public var exportInterval: Duration = .seconds(5)

    public init() {}

    init(node: ConfigNode) throws {
        if node.isScalar {
            enabled = try node.bool()
            return
        }
        var map = try node.mapping()
        if let v = map.optional("enabled") { enabled = try v.bool() }
        if let v = map.optional("endpoint") {
            let text = try v.nonEmptyString()
            guard let url = Self.tracesURL(text) else {
                throw v.error("tracing.endpoint must be an http:// or https:// URL with a host, e.g. http://collector:4318/v1/traces")
            }
            endpoint = url
        }
        if let v = map.optional("sampling_ratio") {
            samplingRatio = try v.double()
            guard (0...1).contains(samplingRatio) else { throw v.error("tracing.sampling_ratio must be between 0 and 1 (0.01 records 1 % of traces)") }
        }
        if let v = map.optional("service_name") { serviceName = try v.nonEmptyString() }
        if let v = map.optional("export_interval") {
            exportInterval = try v.duration()
            guard exportInterval >= .milliseconds(10), exportInterval <= .seconds(60) else {
                throw v.error("tracing.export_interval must be between 10ms and 60s")
            }
        }
        try map.finish()
    }

    /// `text` as the URL spans are posted to, nil if it is not an http(s) URL with a host.
    static func tracesURL(_ text: String) -> String? {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
              scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty,
              components.query == nil, components.fragment == nil else { return nil }
        if components.path.isEmpty || components.path == "/" {
            return (text.hasSuffix("/") ? String(text.dropLast()) : text) + "/v1/traces"
        }
        return text
    }
}
