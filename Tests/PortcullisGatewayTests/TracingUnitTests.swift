@testable import PortcullisGateway
import NIOHTTP1
import PortcullisConfig
import Foundation
import InMemoryTracing
import Testing
import Tracing

/// The `tracing:` section and the trace-context fields the tracer is handed, on their own.
@Suite("tracing: configuration and trace-context fields")
struct TracingUnitTests {
    func parse(_ section: String) throws -> GatewayConfig {
        try GatewayConfig.parse(yaml: "listen: 127.0.0.1:1\n\(section)\nroutes: [{name: r, path_prefix: /, upstream: {targets: ['127.0.0.1:1']}}]\n",
                                file: "gw.yaml")
    }

    @Test("tracing is off by default; the section sets endpoint, ratio, service name and interval, and an endpoint without a path gets /v1/traces")
    func configuration() throws {
        let defaults = try parse("").tracing
        #expect(defaults == TracingConfig())
        #expect(!defaults.enabled && defaults.samplingRatio == 0.01)
        let set = try parse("tracing: {enabled: true, endpoint: 'https://collector.internal:4318', sampling_ratio: 0.25, service_name: edge, export_interval: 1s}").tracing
        #expect(set.enabled && set.samplingRatio == 0.25 && set.serviceName == "edge" && set.exportInterval == .seconds(1))
        #expect(set.endpoint == "https://collector.internal:4318/v1/traces")
        #expect(try parse("tracing: {endpoint: 'http://c:4318/custom/path'}").tracing.endpoint == "http://c:4318/custom/path")
        #expect(try parse("tracing: true").tracing.enabled)
    }

    @Test("configuration errors name the file, line and key", arguments: [
        ("tracing: {sampling_ratio: 1.5}", "tracing.sampling_ratio", "between 0 and 1"),
        ("tracing: {endpoint: 'collector:4318'}", "tracing.endpoint", "http:// or https://"),
        ("tracing: {endpoint: 'ftp://collector/v1/traces'}", "tracing.endpoint", "http:// or https://"),
        ("tracing: {export_interval: 0s}", "tracing.export_interval", "between 10ms and 60s"),
        ("tracing: {sample: 0.5}", "tracing.sample", "unknown key"),
    ])
    func configErrors(_ line: String, _ key: String, _ message: String) {
        do {
            _ = try parse(line)
            Issue.record("accepted: \(line)")
        } catch let error as ConfigError {
            #expect(error.file == "gw.yaml" && error.line == 2 && error.keyPath == key, "\(error)")
            #expect(error.message.contains(message), "\(error)")
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test("only a version-00 traceparent of the W3C shape is handed to the tracer, and only the trace-context fields are")
    func traceHeaders() throws {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let headers = HTTPHeaders([("Authorization", "Bearer secret-token"), ("TraceParent", valid), ("tracestate", "a=b")])
        let fields = try #require(TraceHeaders(headers: headers))
        #expect(fields.traceparent == valid && fields.tracestate == "a=b")
        // What a tracer may log of its carrier.
        #expect(!"\(fields)".contains("secret-token"))
        #expect(TraceHeaders.Extractor().extract(key: "authorization", from: fields) == nil)
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // unknown version
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper-case hex
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7x-01",
            "",
        ] {
            #expect(TraceHeaders(headers: HTTPHeaders([("traceparent", bad)])) == nil, "\(bad)")
        }
    }

    @Test("traces started at the gateway are recorded at the configured ratio: none at 0, all at 1, about a quarter at 0.25")
    func samplingRatio() {
        func recorded(_ ratio: Double) -> Int {
            let tracing = RequestTracing(tracer: NoOpTracer(), node: "n", samplingRatio: ratio)
            return (0..<40_000).filter { _ in tracing.drawRecords() }.count
        }
        #expect(recorded(0) == 0)
        #expect(recorded(1) == 40_000)
        #expect((9_000...11_000).contains(recorded(0.25)))
        #expect((200...600).contains(recorded(0.01)))
    }

    @Test("the exchange's trace context replaces the client's in the upstream head, whatever the fields' case")
    func injection() {
        var fields: [(name: String, value: String)] = [("Host", "h"), ("TraceParent", "client")]
        UpstreamFieldsInjector().inject("ours", forKey: "traceparent", into: &fields)
        #expect(fields.map(\.name) == ["Host", "traceparent"] && fields.last?.value == "ours")
        var headers = HTTPHeaders([(":path", "/"), ("traceparent", "client")])
        UpstreamHeadersInjector().inject("ours", forKey: "traceparent", into: &headers)
        #expect(headers["traceparent"] == ["ours"])
    }

    @Test("a finished request's spans reach the tracer only when flushed, under the request span, each ended when it happened")
    func deferredSpans() throws {
        let tracer = InMemoryTracer()
        let tracing = RequestTracing(tracer: tracer, node: "n1", samplingRatio: 1)
        let trace = try #require(tracing.startRequest(traceparent: nil, headers: [:]))
        let authStart = try #require(trace.childStart)
        trace.recordAuthentication(startedAt: authStart, rejection: "bad_signature")
        // Nothing asked of the tracer yet: the request span is started when its id is needed.
        #expect(tracer.activeSpans.isEmpty)
        var fields: [(name: String, value: String)] = [("traceparent", "client")]
        trace.startExchange(route: "r", fields: &fields)
        #expect(tracer.activeSpans.map(\.operationName).sorted() == ["portcullis.request", "portcullis.upstream"])
        var log = RequestLog(requestID: "id", method: "GET", target: "/a", start: .now())
        log.status = 502
        trace.finish(log)
        let finishedBy = DefaultTracerClock.now.nanosecondsSinceEpoch
        #expect(tracer.finishedSpans.isEmpty)
        Thread.sleep(forTimeInterval: 0.02)
        tracing.flush()

        let spans = Dictionary(uniqueKeysWithValues: tracer.finishedSpans.map { ($0.operationName, $0) })
        #expect(spans.keys.sorted() == ["portcullis.authentication", "portcullis.request", "portcullis.upstream"])
        let request = try #require(spans["portcullis.request"])
        for name in ["portcullis.authentication", "portcullis.upstream"] {
            let child = try #require(spans[name])
            #expect(child.parentSpanID == request.spanID && child.traceID == request.traceID, "\(name)")
            #expect(child.endInstant.nanosecondsSinceEpoch <= finishedBy, "\(name) ended at the flush, not when it happened")
        }
        #expect(request.endInstant.nanosecondsSinceEpoch <= finishedBy)
        #expect(spans["portcullis.authentication"]?.attributes["portcullis.auth.reason"]?.toSpanAttribute() == "bad_signature")
        #expect(request.attributes["http.response.status_code"]?.toSpanAttribute() == 502)
        // The upstream head names the exchange span, not the client's span.
        #expect(fields.contains { $0.value == spans["portcullis.upstream"]?.spanID } && !fields.contains { $0.value == "client" })
        // Flushing again emits nothing twice.
        tracing.flush()
        #expect(tracer.finishedSpans.count == 3)
    }
}

extension TraceHeaders {
    /// As the request path builds it: from the first `traceparent` among `headers`.
    init?(headers: HTTPHeaders) {
        self.init(traceparent: RequestHeadFacts(headers).traceparent, headers: headers)
    }
}
