import Foundation
import PortcullisJOSE
import PortcullisTestSupport
import Testing

/// Tracing end to end with real peers: a gateway process exporting over OTLP/HTTP to a Python
/// receiver that decodes the export with the OpenTelemetry project's protobuf classes
/// (Scripts/otlp_receiver.py, PyPI `opentelemetry-proto`), and the echo upstream, which shows the
/// `traceparent` it received.
@Suite("gateway: tracing (OTLP/HTTP export, W3C trace context)", .serialized)
struct TracingTests {
    static let receiverScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/otlp_receiver.py").path

    /// The client's trace: sampled (flags 01), with a vendor's `tracestate`.
    static let clientTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
    static let clientSpanID = "00f067aa0ba902b7"
    static let sampledParent = "00-\(clientTraceID)-\(clientSpanID)-01"

    /// A receiver, an echo upstream and a gateway exporting to the receiver.
    struct Bed {
        let receiver: ManagedProcess
        let output: String
        let upstream: TestUpstream
        let issuer: TestIssuer
        let gateway: GatewayProcess

        /// `tracing` is the body of the gateway's `tracing:` section (the endpoint is added).
        /// `endpoint` replaces the receiver's URL as the export target.
        /// `receiverTLS`: the receiver serves HTTPS with this certificate (the endpoint is then https).
        static func start(tracing: String, endpoint: String? = nil, exportInterval: String = "50ms",
                          receiverTLS: TestCertificateAuthority.Leaf? = nil, receiverDrips: Bool = false,
                          routes: ((_ upstream: String) -> String)? = nil) async throws -> Bed {
            let port = try FreePort.allocate()
            let directory = try TemporaryDirectory.make(prefix: "otlp-receiver")
            let output = directory + "/spans.jsonl"
            let tlsArguments = receiverTLS.map { [$0.certificate, $0.privateKey] } ?? []
            let receiver = try ManagedProcess(executable: "/usr/bin/env", arguments: ["python3", TracingTests.receiverScript, String(port), output] + tlsArguments + (receiverDrips ? ["--drip"] : []),
                                              logFile: directory + "/receiver.log")
            guard try await Poll.until(timeout: .seconds(10), { receiver.output.contains("ready") }) else {
                _ = await receiver.terminate()
                throw FixtureError("otlp_receiver.py did not start: \(receiver.output)")
            }
            let upstream = try await TestUpstream.start()
            let issuer = try TestIssuer()
            let upstreamAddress = upstream.address
            let gateway: GatewayProcess
            do {
                gateway = try await GatewayProcess.start(logArguments: ["--log-format", "json"]) { gatewayPort, adminPort, directory in
                    let issuers = (try? issuer.issuersYAML(directory: directory)) ?? ""
                    return """
                    listen: 127.0.0.1:\(gatewayPort)
                    admin_listen: 127.0.0.1:\(adminPort)
                    node_id: traced-node
                    event_loops: 1
                    tracing: {endpoint: "\(endpoint ?? "\(receiverTLS == nil ? "http" : "https")://127.0.0.1:\(port)/v1/traces")", export_interval: \(exportInterval), \(tracing)}
                    \(issuers)
                    rate_limits:
                      - {name: per-subject, key: subject, limit: 1000, window: 1s}
                    routes:
                    \(routes?(upstreamAddress) ?? "  - {name: orders, path_prefix: /orders, upstream: {targets: [\(upstreamAddress)]}, auth: {type: jwt}, rate_limit: per-subject}")
                    """
                }
            } catch {
                _ = await receiver.terminate()
                await upstream.stop()
                throw error
            }
            return Bed(receiver: receiver, output: output, upstream: upstream, issuer: issuer, gateway: gateway)
        }

        func stop() async {
            await gateway.stop()
            await upstream.stop()
            _ = await receiver.terminate()
        }

        /// Every line the receiver wrote: exports and spans.
        var lines: [[String: Any]] {
            let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
        }

        var spans: [[String: Any]] { lines.filter { $0["name"] != nil } }

        /// The spans of trace `traceID`, once `count` of them arrived (or what arrived in 10 s).
        func spans(trace traceID: String, count: Int) async throws -> [[String: Any]] {
            var found: [[String: Any]] = []
            _ = try await Poll.until(timeout: .seconds(10)) {
                found = spans.filter { $0["trace_id"] as? String == traceID }
                return found.count >= count
            }
            return found
        }

        /// The access-log object of the request with `requestID`.
        func accessLogEntry(requestID: String) async throws -> [String: Any]? {
            var entry: [String: Any]?
            _ = try await Poll.until(timeout: .seconds(5)) {
                entry = gateway.process.output.split(separator: "\n").compactMap {
                    (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
                }.first { $0["logger"] as? String == "portcullis.access" && $0["request_id"] as? String == requestID }
                return entry != nil
            }
            return entry
        }
    }

    static func named(_ name: String, in spans: [[String: Any]]) -> [String: Any]? {
        spans.first { $0["name"] as? String == name }
    }

    static func attributes(_ span: [String: Any]?) -> [String: Any] {
        span?["attributes"] as? [String: Any] ?? [:]
    }

    /// What the echo upstream says it received as `name`.
    static func upstreamSaw(_ name: String, in response: HTTPTestResponse) -> [String]? {
        (response.json["headers"] as? [String: [String]])?[name]
    }

    @Test("a sampled traceparent's trace gets request, authentication, rate-limit and upstream spans, each inside the request's time; the upstream's traceparent names the exchange span; the configured headers reach the collector")
    func sampledRequestIsTracedAndPropagated() async throws {
        // Ratio 0: only the client's sampled flag can make this request recorded (parent-based).
        let section = "enabled: true, sampling_ratio: 0, service_name: gw-under-test, headers: {Authorization: 'Bearer collector-secret'}"
        try await withCleanup(try await Bed.start(tracing: section), { await $0.stop() }) { bed in
            let token = try bed.issuer.token(sub: "trace-user")
            let response = try bed.gateway.request("GET", "/orders/42?q=1", headers: [
                ("Authorization", "Bearer \(token)"), ("traceparent", Self.sampledParent), ("tracestate", "vendor=abc"),
            ])
            #expect(response.status == 200)
            let spans = try await bed.spans(trace: Self.clientTraceID, count: 4)
            #expect(Set(spans.compactMap { $0["name"] as? String }) == ["portcullis.request", "portcullis.authentication",
                                                                          "portcullis.rate_limit", "portcullis.upstream"])
            let request = try #require(Self.named("portcullis.request", in: spans))
            let requestSpanID = try #require(request["span_id"] as? String)
            #expect(request["parent_span_id"] as? String == Self.clientSpanID)
            #expect(request["kind"] as? String == "server")
            let requestStart = try #require(request["start"] as? Int), requestEnd = try #require(request["end"] as? Int)
            #expect(requestStart > 1_700_000_000 * 1_000_000_000 && requestEnd >= requestStart, "ns since the epoch: \(requestStart)")
            for child in ["portcullis.authentication", "portcullis.rate_limit", "portcullis.upstream"] {
                let span = Self.named(child, in: spans)
                #expect(span?["parent_span_id"] as? String == requestSpanID, "\(child)")
                let start = try #require(span?["start"] as? Int), end = try #require(span?["end"] as? Int)
                #expect(requestStart <= start && start <= end && end <= requestEnd, "\(child) lies within the request span")
                #expect(span?["trace_state"] as? String == "vendor=abc" && span?["scope"] as? String == "portcullis", "\(child)")
            }
            let export = try #require(bed.lines.first { $0["export"] != nil })
            #expect(export["export"] as? String == "/v1/traces" && export["content_type"] as? String == "application/x-protobuf")
            #expect(export["authorization"] as? String == "Bearer collector-secret")
            let attributes = Self.attributes(request)
            #expect(attributes["portcullis.route"] as? String == "orders")
            #expect(attributes["http.request.method"] as? String == "GET")
            #expect(attributes["http.response.status_code"] as? Int == 200)
            #expect(attributes["portcullis.node"] as? String == "traced-node")
            #expect(attributes["url.path"] as? String == "/orders/42")
            #expect((request["resource"] as? [String: Any])?["service.name"] as? String == "gw-under-test")
            #expect(Self.attributes(Self.named("portcullis.authentication", in: spans))["portcullis.auth.result"] as? String == "accepted")
            let rateLimit = Self.attributes(Self.named("portcullis.rate_limit", in: spans))
            #expect(rateLimit["portcullis.rate_limit.policy"] as? String == "per-subject")
            #expect(rateLimit["portcullis.rate_limit.allowed"] as? Bool == true)

            let exchange = try #require(Self.named("portcullis.upstream", in: spans))
            #expect(exchange["kind"] as? String == "client")
            #expect(Self.attributes(exchange)["server.address"] as? String == bed.upstream.address)
            #expect(Self.attributes(exchange)["http.response.status_code"] as? Int == 200)
            let exchangeSpanID = try #require(exchange["span_id"] as? String)
            #expect(Self.upstreamSaw("traceparent", in: response) == ["00-\(Self.clientTraceID)-\(exchangeSpanID)-01"])
            #expect(Self.upstreamSaw("tracestate", in: response) == ["vendor=abc"])

            let requestID = try #require(response.header("x-request-id"))
            #expect(try await bed.accessLogEntry(requestID: requestID)?["trace_id"] as? String == Self.clientTraceID)
        }
    }

    @Test("an HTTP/2 request is traced like an HTTP/1.1 one: the client's trace continues and the upstream's traceparent names the exchange span")
    func http2RequestIsTraced() async throws {
        try await withCleanup(try await Bed.start(tracing: "enabled: true, sampling_ratio: 0"), { await $0.stop() }) { bed in
            let token = try bed.issuer.token()
            let result = try runCommand("/usr/bin/env", ["curl", "-s", "--max-time", "10", "--http2-prior-knowledge",
                                                         "-H", "Authorization: Bearer \(token)", "-H", "traceparent: \(Self.sampledParent)",
                                                         "http://127.0.0.1:\(bed.gateway.port)/orders/h2"])
            let echo = try #require(try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout) \(result.stderr)")
            let spans = try await bed.spans(trace: Self.clientTraceID, count: 4)
            let request = try #require(Self.named("portcullis.request", in: spans))
            #expect(request["parent_span_id"] as? String == Self.clientSpanID)
            #expect(Self.attributes(request)["url.path"] as? String == "/orders/h2")
            let exchange = try #require(Self.named("portcullis.upstream", in: spans))
            #expect(exchange["parent_span_id"] as? String == request["span_id"] as? String)
            let exchangeSpanID = try #require(exchange["span_id"] as? String)
            #expect((echo["headers"] as? [String: [String]])?["traceparent"] == ["00-\(Self.clientTraceID)-\(exchangeSpanID)-01"])
        }
    }

    @Test("a gRPC call to an h2c upstream gets an exchange span under its request span, naming the gRPC server")
    func grpcCallIsTraced() async throws {
        let serverPort = try FreePort.allocate()
        let directory = try TemporaryDirectory.make(prefix: "grpc-upstream")
        let server = try ManagedProcess(executable: "/usr/bin/env", arguments: ["python3", GRPCGatewayTests.script, "server", String(serverPort)],
                                        logFile: directory + "/server.log")
        defer { Task { _ = await server.terminate() } }
        #expect(try await Poll.until(timeout: .seconds(20)) { server.output.contains("ready") }, "grpc server: \(server.output)")
        try await withCleanup(try await Bed.start(tracing: "enabled: true, sampling_ratio: 1", routes: { _ in
            "  - {name: grpc, path_prefix: /pkg.Echo, upstream: {targets: [127.0.0.1:\(serverPort)], protocol: h2c}, auth: {type: jwt}}"
        }), { await $0.stop() }) { bed in
            let result = try runCommand("/usr/bin/env", ["python3", GRPCGatewayTests.script, "client", String(bed.gateway.port), try bed.issuer.token(sub: "carol")])
            #expect(result.stdout.contains("carol:hello"), "\(result.stdout) \(result.stderr)")
            var exchange: [String: Any]?
            var spans: [[String: Any]] = []
            _ = try await Poll.until(timeout: .seconds(10)) {
                spans = bed.spans
                exchange = spans.first { $0["name"] as? String == "portcullis.upstream" && (Self.attributes($0)["http.response.status_code"] as? Int) == 200 }
                return exchange != nil
            }
            let found = try #require(exchange)
            #expect(found["kind"] as? String == "client")
            #expect(Self.attributes(found)["server.address"] as? String == "127.0.0.1:\(serverPort)")
            let parent = spans.first { $0["span_id"] as? String == found["parent_span_id"] as? String }
            #expect(parent?["name"] as? String == "portcullis.request")
            #expect(Self.attributes(parent)["portcullis.route"] as? String == "grpc")
        }
    }

    @Test("on SIGTERM the spans of the requests served are exported before the gateway exits, though the export interval has not passed")
    func spansAreExportedOnShutdown() async throws {
        try await withCleanup(try await Bed.start(tracing: "enabled: true, sampling_ratio: 1", exportInterval: "60s"), { await $0.stop() }) { bed in
            #expect(try bed.gateway.request("GET", "/orders/last", headers: [("Authorization", "Bearer \(try bed.issuer.token())")]).status == 200)
            try await Task.sleep(for: .milliseconds(300))
            #expect(bed.spans.isEmpty, "exported before the interval: \(bed.spans)")
            #expect(await bed.gateway.process.terminate(timeout: .seconds(10)) == 0)
            #expect(Set(bed.spans.compactMap { $0["name"] as? String }).contains("portcullis.upstream"), "\(bed.lines)")
        }
    }

    @Test("an https endpoint is trusted through ca_file: with the collector's CA the spans arrive, with another CA none do and the gateway serves on")
    func httpsEndpointVerifiedWithCAFile() async throws {
        let authority = try TestCertificateAuthority.make(name: "Collector CA")
        let other = try TestCertificateAuthority.make(name: "Another CA")
        let leaf = try authority.issue("collector")
        for (ca, delivered) in [(authority.certificate, true), (other.certificate, false)] {
            try await withCleanup(try await Bed.start(tracing: "enabled: true, sampling_ratio: 1, ca_file: '\(ca)'", receiverTLS: leaf), { await $0.stop() }) { bed in
                let token = try bed.issuer.token()
                #expect(try bed.gateway.request("GET", "/orders/tls", headers: [("Authorization", "Bearer \(token)")]).status == 200)
                let arrived = try await Poll.until(timeout: .seconds(delivered ? 10 : 2)) { Self.named("portcullis.request", in: bed.spans) != nil }
                #expect(arrived == delivered, "CA \(ca): \(bed.lines)")
                #expect(bed.gateway.process.isRunning)
            }
        }
    }

    /// A TCP port that accepts connections (the kernel completes them) and never answers: an OTLP
    /// endpoint that hangs every post.
    static func silentListener() throws -> (port: Int, socket: Int32) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard fd >= 0, bound, listen(fd, 64) == 0 else { throw FixtureError("cannot listen") }
        return (Int(UInt16(bigEndian: address.sin_port)), fd)
    }

    @Test("an OTLP endpoint that refuses connections, or accepts them and never answers, delays no request, and stopping the gateway only briefly", arguments: ["refuses", "hangs"])
    func unreachableEndpointDelaysNothing(_ endpoint: String) async throws {
        let silent = try Self.silentListener()
        defer { close(silent.socket) }
        let port = endpoint == "hangs" ? silent.port : try FreePort.allocate()
        try await withCleanup(try await Bed.start(tracing: "enabled: true, sampling_ratio: 1", endpoint: "http://127.0.0.1:\(port)/v1/traces"), { await $0.stop() }) { bed in
            let token = try bed.issuer.token()
            let clock = ContinuousClock()
            for index in 0..<20 {
                let started = clock.now
                #expect(try bed.gateway.request("GET", "/orders/\(index)", headers: [("Authorization", "Bearer \(token)")]).status == 200)
                #expect(clock.now - started < .seconds(1))
                // Across several export attempts.
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(bed.gateway.process.isRunning)
            // Stopping waits for the last export at most TracingExporter.stopTimeout (3 s).
            let stopping = clock.now
            #expect(await bed.gateway.process.terminate(timeout: .seconds(10)) == 0)
            #expect(clock.now - stopping < .seconds(5))
        }
    }

    /// The build before waited on the body's bytes: the collector's drip kept restarting the read
    /// timeout, so the one export task never returned, and no span was sent again (an attacker
    /// review: one post in 9 minutes, no warning).
    @Test("a collector that answers 200 and then drips its body a byte every 2 s holds an export for at most its 10 s: the next export is posted, and a warning says the answer was abandoned")
    func drippingCollectorHoldsOneExport() async throws {
        try await withCleanup(try await Bed.start(tracing: "enabled: true, sampling_ratio: 1", receiverDrips: true), { await $0.stop() }) { bed in
            let token = try bed.issuer.token()
            #expect(try bed.gateway.request("GET", "/orders/first", headers: [("Authorization", "Bearer \(token)")]).status == 200)
            _ = try await Poll.until(timeout: .seconds(5)) { bed.lines.contains { $0["export"] != nil } }
            try await Task.sleep(for: .milliseconds(500))
            #expect(try bed.gateway.request("GET", "/orders/second", headers: [("Authorization", "Bearer \(token)")]).status == 200)
            let second = try await Poll.until(timeout: .seconds(20)) {
                bed.spans.contains { ($0["attributes"] as? [String: Any])?["url.path"] as? String == "/orders/second" }
            }
            #expect(second, "the span of the request after the dripping answer was never exported")
            #expect(bed.gateway.process.output.contains("did not finish its answer in time"))
        }
    }

    @Test("at ratio 0 a request without a traceparent, or with an unsampled one, is not recorded and its traceparent passes unchanged")
    func unsampledRequestsAreNotRecorded() async throws {
        try await withCleanup(try await Bed.start(tracing: "enabled: true, sampling_ratio: 0"), { await $0.stop() }) { bed in
            let token = try bed.issuer.token()
            let unsampled = "00-\(String(repeating: "ab", count: 16))-\(Self.clientSpanID)-00"
            let response = try bed.gateway.request("GET", "/orders/1", headers: [("Authorization", "Bearer \(token)"), ("traceparent", unsampled)])
            #expect(Self.upstreamSaw("traceparent", in: response) == [unsampled])
            #expect(try bed.gateway.request("GET", "/orders/2", headers: [("Authorization", "Bearer \(token)")]).status == 200)
            // A sampled request after them: once its spans arrived, the earlier ones would have too.
            _ = try bed.gateway.request("GET", "/orders/3", headers: [("Authorization", "Bearer \(token)"), ("traceparent", Self.sampledParent)])
            _ = try await bed.spans(trace: Self.clientTraceID, count: 4)
            #expect(Set(bed.spans.compactMap { $0["trace_id"] as? String }) == [Self.clientTraceID])
        }
    }

    @Test("a tracestate built to crash the trace-context parser (letters with combining marks) is dropped: the gateway answers, lives on, and passes no tracestate upstream")
    func hostileTracestateIsDropped() async throws {
        try await withCleanup(try await Bed.start(tracing: "enabled: true, sampling_ratio: 0"), { await $0.stop() }) { bed in
            let token = try bed.issuer.token()
            let hostile = String(repeating: "q\u{301}", count: 89) + "=x"
            for traceparent in [Self.sampledParent, "00-\(Self.clientTraceID)-\(Self.clientSpanID)-00"] {
                let response = try bed.gateway.request("GET", "/orders/7", headers: [
                    ("Authorization", "Bearer \(token)"), ("traceparent", traceparent), ("tracestate", hostile),
                ])
                #expect(response.status == 200)
                #expect(Self.upstreamSaw("traceparent", in: response)?.first?.contains(Self.clientTraceID) == true)
                #expect(Self.upstreamSaw("tracestate", in: response) == (traceparent == Self.sampledParent ? nil : [hostile]),
                        "recorded: the gateway's (none); not recorded: the client's fields untouched")
            }
            #expect(bed.gateway.process.isRunning)
            #expect(try bed.gateway.request("GET", "/orders/8", headers: [("Authorization", "Bearer \(token)")]).status == 200)
        }
    }

    @Test("a bad token's authentication span says rejected and why, and the token appears in no attribute")
    func rejectedTokenRecordsReasonNotToken() async throws {
        try await withCleanup(try await Bed.start(tracing: "enabled: true, sampling_ratio: 1"), { await $0.stop() }) { bed in
            let forger = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "es-1")
            let forged = try bed.issuer.token(sub: "mallory", signer: forger)
            let response = try bed.gateway.request("GET", "/orders/9", headers: [("Authorization", "Bearer \(forged)")])
            #expect(response.status == 401)
            var spans: [[String: Any]] = []
            _ = try await Poll.until(timeout: .seconds(10)) {
                spans = bed.spans
                return Self.named("portcullis.request", in: spans) != nil
            }
            let authentication = Self.attributes(Self.named("portcullis.authentication", in: spans))
            #expect(authentication["portcullis.auth.result"] as? String == "rejected")
            let reason = try #require(authentication["portcullis.auth.reason"] as? String)
            #expect(!reason.isEmpty)
            #expect(Self.attributes(Self.named("portcullis.request", in: spans))["http.response.status_code"] as? Int == 401)
            #expect(Self.named("portcullis.upstream", in: spans) == nil)
            // Neither the token nor any of its parts (header, claims, signature) nor a claim value.
            let exported = (try? String(contentsOfFile: bed.output, encoding: .utf8)) ?? ""
            for secret in forged.split(separator: ".").map(String.init) + ["mallory"] {
                #expect(!exported.contains(secret), "exported spans contain \(secret.prefix(12))…")
            }
        }
    }

    @Test("with tracing disabled nothing is exported, the upstream gets the client's traceparent unchanged and the access log has no trace id")
    func disabledExportsNothing() async throws {
        try await withCleanup(try await Bed.start(tracing: "enabled: false, sampling_ratio: 1"), { await $0.stop() }) { bed in
            let token = try bed.issuer.token()
            var requestIDs: [String] = []
            for headers in [[("traceparent", Self.sampledParent), ("tracestate", "vendor=abc")], []] {
                let response = try bed.gateway.request("GET", "/orders/5", headers: [("Authorization", "Bearer \(token)")] + headers)
                #expect(response.status == 200)
                #expect(Self.upstreamSaw("traceparent", in: response) == (headers.isEmpty ? nil : [Self.sampledParent]))
                #expect(Self.upstreamSaw("tracestate", in: response) == (headers.isEmpty ? nil : ["vendor=abc"]))
                requestIDs.append(try #require(response.header("x-request-id")))
            }
            for requestID in requestIDs {
                let entry = try #require(try await bed.accessLogEntry(requestID: requestID))
                #expect(entry["trace_id"] == nil)
            }
            // Ten export intervals.
            try await Task.sleep(for: .milliseconds(500))
            #expect(bed.lines.isEmpty, "the receiver got \(bed.lines)")
        }
    }
}
