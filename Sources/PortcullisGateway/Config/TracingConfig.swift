import Foundation
import NIOSSL
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
    /// Fields added to every export request, e.g. a collector's `Authorization` (values take
    /// `${ENV}` and `{file: path}` like other secrets). Default none.
    public var headers: [(name: String, value: String)] = []
    /// PEM bundle of the roots trusted for an `https` endpoint; nil uses the system's.
    public var caFile: String?

    public init() {}

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.enabled == rhs.enabled && lhs.endpoint == rhs.endpoint && lhs.samplingRatio == rhs.samplingRatio
            && lhs.serviceName == rhs.serviceName && lhs.exportInterval == rhs.exportInterval && lhs.caFile == rhs.caFile
            && lhs.headers.elementsEqual(rhs.headers) { $0.name == $1.name && $0.value == $1.value }
    }

    init(node: ConfigNode, baseDirectory: String) throws {
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
        if let v = map.optional("headers") {
            var entries = try v.mapping()
            for (name, value) in entries.all() {
                guard HeaderName.isValid(name) else { throw value.error("'\(name)' is not a valid header name") }
                guard !HeaderRules.isFraming(name), !HeaderRules.isConnectionLevel(name), name.lowercased() != "host" else {
                    throw value.error("'\(name)' is set by the HTTP client itself")
                }
                let text = try value.string()
                guard !text.utf8.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }) else {
                    throw value.error("header values may not contain control characters")
                }
                headers.append((name, text))
            }
        }
        if let v = map.optional("ca_file") {
            let path = resolve(try v.nonEmptyString(), against: baseDirectory)
            guard FileManager.default.isReadableFile(atPath: path) else { throw v.error("cannot read \(path)") }
            guard let roots = try? NIOSSLCertificate.fromPEMFile(path), !roots.isEmpty else {
                throw v.error("\(path) holds no PEM certificate")
            }
            caFile = path
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
