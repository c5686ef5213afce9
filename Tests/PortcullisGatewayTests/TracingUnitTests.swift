@testable import PortcullisGateway
import NIOHTTP1
import PortcullisConfig
import Foundation
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
        let headers = try parse("tracing: {headers: {Authorization: 'Bearer t', X-Scope-OrgID: tenant-1}}").tracing.headers
        #expect(headers.map(\.name) == ["Authorization", "X-Scope-OrgID"] && headers.map(\.value) == ["Bearer t", "tenant-1"])
    }

    @Test("configuration errors name the file, line and key", arguments: [
        ("tracing: {sampling_ratio: 1.5}", "tracing.sampling_ratio", "between 0 and 1"),
        ("tracing: {endpoint: 'collector:4318'}", "tracing.endpoint", "http:// or https://"),
        ("tracing: {endpoint: 'ftp://collector/v1/traces'}", "tracing.endpoint", "http:// or https://"),
        ("tracing: {export_interval: 0s}", "tracing.export_interval", "between 10ms and 60s"),
        ("tracing: {sample: 0.5}", "tracing.sample", "unknown key"),
        ("tracing: {headers: {'bad name': x}}", "tracing.headers.bad name", "not a valid header name"),
        ("tracing: {headers: {Content-Length: '5'}}", "tracing.headers.Content-Length", "set by the HTTP client itself"),
        ("tracing: {headers: {X-A: \"a\\nb\"}}", "tracing.headers.X-A", "control characters"),
        ("tracing: {ca_file: /nonexistent/ca.pem}", "tracing.ca_file", "cannot read"),
        ("tracing: {ca_file: /etc/hostname}", "tracing.ca_file", "holds no PEM certificate"),
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

    @Test("only a version-00 traceparent in lower-case hex with non-zero ids continues the client's trace; a malformed tracestate is dropped, the traceparent kept")
    func traceHeaders() throws {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let headers = HTTPHeaders([("Authorization", "Bearer secret-token"), ("TraceParent", valid), ("tracestate", "a=b")])
        let fields = try #require(TraceHeaders(headers: headers))
        #expect(fields.traceID.description == "4bf92f3577b34da6a3ce929d0e0e4736" && fields.spanID.description == "00f067aa0ba902b7")
        #expect(fields.sampled && fields.traceState == "a=b")
        #expect(try #require(TraceHeaders(headers: ["traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"])).sampled == false)
        let twoFields = try #require(TraceHeaders(headers: HTTPHeaders([("traceparent", valid), ("tracestate", "a=b"), ("tracestate", "c=d")])))
        #expect(twoFields.traceState == "a=b, c=d", "several tracestate fields are one list")
        let badState = try #require(TraceHeaders(headers: ["traceparent": valid, "tracestate": "no equals sign"]))
        #expect(badState.traceState == nil && badState.traceID == fields.traceID)
        // A tracestate that is not printable ASCII, or longer than 512 bytes, is dropped before
        // swift-w3c-trace-context parses it: a letter with a combining mark made that parser step
        // before the string's start, a trap that took the gateway down (before authentication).
        let combining = String(repeating: "q\u{301}", count: 89) + "=x"
        let hostile = try #require(TraceHeaders(headers: ["traceparent": valid, "tracestate": combining]))
        #expect(hostile.traceState == nil && hostile.traceID == fields.traceID)
        #expect(try #require(TraceHeaders(headers: ["traceparent": valid, "tracestate": "v=" + String(repeating: "a", count: 520)])).traceState == nil)
        let longest = "v=" + String(repeating: "a", count: 250) + ",w=" + String(repeating: "b", count: 250)
        #expect(try #require(TraceHeaders(headers: ["traceparent": valid, "tracestate": longest])).traceState
                    == longest.replacingOccurrences(of: ",", with: ", "))
        // More than W3C's 32 members, or past 512 bytes once written back (the library joins with
        // ", "): dropped. The build before carried 100 empty members, 588 bytes (an attacker review).
        let members = { (count: Int) in (0..<count).map { "k\($0)=" }.joined(separator: ",") }
        #expect(try #require(TraceHeaders(headers: ["traceparent": valid, "tracestate": members(100)])).traceState == nil)
        #expect(try #require(TraceHeaders(headers: ["traceparent": valid, "tracestate": members(33)])).traceState == nil)
        #expect(try #require(TraceHeaders(headers: ["traceparent": valid, "tracestate": members(32)])).traceState?.split(separator: ",").count == 32)
        let growing = (0..<30).map { "key\($0)=" + String(repeating: "v", count: 10) }.joined(separator: ",")
        #expect(growing.utf8.count <= 512)
        #expect(try #require(TraceHeaders(headers: ["traceparent": valid, "tracestate": growing])).traceState == nil, "over 512 bytes once written back")
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // unknown version
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper-case hex
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7x-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // all-zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // all-zero span id
            "",
        ] {
            #expect(TraceHeaders(headers: HTTPHeaders([("traceparent", bad)])) == nil, "\(bad)")
        }
    }

    @Test("the exporter's log names the endpoint without its user and password")
    func endpointForLogs() {
        #expect(TracingExporter.withoutCredentials("https://user:secret@collector:4318/v1/traces") == "https://collector:4318/v1/traces")
        #expect(TracingExporter.withoutCredentials("http://collector:4318/v1/traces") == "http://collector:4318/v1/traces")
    }

    @Test("traces started at the gateway are recorded at the configured ratio: none at 0, all at 1, about a quarter at 0.25")
    func samplingRatio() {
        func recorded(_ ratio: Double) -> Int {
            let tracing = RequestTracing(node: "n", samplingRatio: ratio)
            return (0..<40_000).filter { _ in tracing.drawRecords() }.count
        }
        #expect(recorded(0) == 0)
        #expect(recorded(1) == 40_000)
        #expect((9_000...11_000).contains(recorded(0.25)))
        #expect((200...600).contains(recorded(0.01)))
    }

    @Test("a recorded request's spans are queued only when it ends, under the request span in the client's trace, each ended when it happened; the upstream head names the exchange span")
    func recordedSpans() throws {
        let tracing = RequestTracing(node: "n1", samplingRatio: 0)
        let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let headers = HTTPHeaders([("traceparent", client), ("tracestate", "v=1")])
        let trace = try #require(tracing.startRequest(traceparent: client, headers: headers))
        let authStart = try #require(trace.childStart)
        trace.recordAuthentication(startedAt: authStart, rejection: "bad_signature")
        var fields: [(name: String, value: String)] = [("Host", "h"), ("TraceParent", client), ("TRACESTATE", "v=1")]
        trace.startExchange(route: "r", fields: &fields)
        var log = RequestLog(requestID: "id", method: "GET", target: "/a?secret=1", start: .now())
        log.status = 502
        #expect(tracing.pendingCount == 0, "queued before the request ended")
        Thread.sleep(forTimeInterval: 0.02)
        let endedBy = RequestTrace.now()
        trace.finish(log)
        trace.finish(log)
        let spans = Dictionary(uniqueKeysWithValues: tracing.take().spans.map { ($0.name, $0) })
        #expect(spans.keys.sorted() == ["portcullis.authentication", "portcullis.request", "portcullis.upstream"], "finishing twice queues once")
        let request = try #require(spans["portcullis.request"])
        #expect(request.traceID.description == "4bf92f3577b34da6a3ce929d0e0e4736" && request.parentSpanID?.description == "00f067aa0ba902b7")
        #expect(request.kind == .server && request.isError && request.traceState == "v=1")
        #expect(request.attributes["http.response.status_code"]?.toSpanAttribute() == 502)
        #expect(request.attributes["url.path"]?.toSpanAttribute() == "/a", "the query string is not recorded")
        let long = try #require(tracing.startRequest(traceparent: client, headers: headers))
        long.finish(RequestLog(requestID: "id2", method: "GET", target: "/" + String(repeating: "p", count: 5000), start: .now()))
        #expect(tracing.take().spans.first?.attributes["url.path"]?.toSpanAttribute() == .string("/" + String(repeating: "p", count: RequestTrace.maxPathBytes - 1)))
        let auth = try #require(spans["portcullis.authentication"])
        #expect(auth.attributes["portcullis.auth.reason"]?.toSpanAttribute() == "bad_signature")
        #expect(auth.end < endedBy, "the authentication span ended when authentication did, not at the request's end")
        let exchange = try #require(spans["portcullis.upstream"])
        #expect(exchange.kind == .client && exchange.isError && exchange.attributes["error.type"]?.toSpanAttribute() == "no_response")
        for child in [auth, exchange] {
            #expect(child.parentSpanID == request.spanID && child.traceID == request.traceID && child.spanID != request.spanID)
            #expect(child.start >= request.start && child.end <= request.end)
        }
        // The client's fields are replaced, whatever their case, by the exchange span's.
        #expect(fields.map(\.name) == ["Host", "traceparent", "tracestate"])
        #expect(fields[1].value == "00-4bf92f3577b34da6a3ce929d0e0e4736-\(exchange.spanID)-01" && fields[2].value == "v=1")
    }

    @Test("an exchange that fails after the upstream's head (a malformed body, say) ends its upstream span in error with the gateway's reason beside the upstream's status; one that completes does not")
    func exchangeFailingAfterTheHead() throws {
        let tracing = RequestTracing(node: "n1", samplingRatio: 0)
        let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        func upstreamSpan(reason: String?) throws -> FinishedSpan {
            let trace = try #require(tracing.startRequest(traceparent: client, headers: HTTPHeaders([("traceparent", client)])))
            var fields: [(name: String, value: String)] = []
            trace.startExchange(route: "r", fields: &fields)
            trace.upstreamStatus = 200
            var log = RequestLog(requestID: "id", method: "GET", target: "/a", start: .now())
            log.status = reason == nil ? 200 : 502
            log.reason = reason
            trace.finish(log)
            return try #require(tracing.take().spans.first { $0.name == "portcullis.upstream" })
        }
        let failed = try upstreamSpan(reason: "protocol_error")
        #expect(failed.isError)
        #expect(failed.attributes["http.response.status_code"]?.toSpanAttribute() == 200)
        #expect(failed.attributes["error.type"]?.toSpanAttribute() == "protocol_error")
        let completed = try upstreamSpan(reason: nil)
        #expect(!completed.isError && completed.attributes["error.type"] == nil)
    }

    @Test("an unsampled traceparent records nothing and leaves the upstream head as the client sent it; a trace started here that the draw skips costs no trace at all")
    func unsampledRecordsNothing() throws {
        let tracing = RequestTracing(node: "n1", samplingRatio: 0)
        let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        let trace = try #require(tracing.startRequest(traceparent: client, headers: ["traceparent": client]))
        #expect(trace.childStart == nil && trace.traceID.description == "4bf92f3577b34da6a3ce929d0e0e4736")
        var fields: [(name: String, value: String)] = [("traceparent", client)]
        trace.startExchange(route: "r", fields: &fields)
        #expect(fields.map(\.value) == [client])
        trace.finish(RequestLog(requestID: "id", method: "GET", target: "/", start: .now()))
        #expect(tracing.pendingCount == 0)
        #expect(tracing.startRequest(traceparent: nil, headers: [:]) == nil)
    }

    @Test("spans beyond the queue's bound are dropped and counted, not kept")
    func queueIsBounded() {
        let tracing = RequestTracing(node: "n1", samplingRatio: 1)
        for index in 0..<(RequestTracing.maxPendingSpans + 10) {
            let trace = tracing.startRequest(traceparent: nil, headers: [:])
            trace?.finish(RequestLog(requestID: "\(index)", method: "GET", target: "/", start: .now()))
        }
        let taken = tracing.take()
        #expect(taken.spans.count == RequestTracing.maxPendingSpans && taken.dropped == 10)
        #expect(tracing.take().spans.isEmpty)
    }
}

extension TraceHeaders {
    /// As the request path builds it: from the first `traceparent` among `headers`.
    init?(headers: HTTPHeaders) {
        self.init(traceparent: RequestHeadFacts(headers).traceparent, headers: headers)
    }
}
