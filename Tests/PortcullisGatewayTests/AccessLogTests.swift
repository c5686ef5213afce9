import Foundation
@testable import PortcullisObservability
import PortcullisTestSupport
import Testing

/// The access log of a real gateway process run with `--log-format json --log-level warning`:
/// one typed JSON object per request, written although the process log is set above `info`.
@Suite("gateway: access log fields", .serialized)
final class AccessLogTests {
    let upstream: TestUpstream
    let issuer: TestIssuer
    let gateway: GatewayProcess

    init() async throws {
        upstream = try await TestUpstream.start()
        let issuer = try TestIssuer()
        self.issuer = issuer
        let upstreamAddress = upstream.address
        gateway = try await GatewayProcess.start(logArguments: ["--log-level", "warning", "--log-format", "json"]) { port, adminPort, directory in
            let issuers = (try? issuer.issuersYAML(directory: directory)) ?? ""
            return """
            listen: 127.0.0.1:\(port)
            admin_listen: 127.0.0.1:\(adminPort)
            event_loops: 1
            \(issuers)
            routes:
              - {name: api, path_prefix: /api, upstream: {targets: [\(upstreamAddress)]}, auth: {type: jwt}}
            """
        }
    }

    deinit {
        let gateway = self.gateway, upstream = self.upstream
        Task {
            await gateway.stop()
            await upstream.stop()
        }
    }

    /// The access-log objects whose path is `path`.
    func entries(path: String) async throws -> [[String: Any]] {
        var found: [[String: Any]] = []
        _ = try await Poll.until(timeout: .seconds(5)) {
            found = gateway.process.output.split(separator: "\n").compactMap { line in
                (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
            }.filter { $0["logger"] as? String == "portcullis.access" && $0["path"] as? String == path }
            return !found.isEmpty
        }
        return found
    }

    @Test("a proxied request's line has typed client, host, path without query, status, bytes, durations, upstream, route and identity")
    func proxiedRequest() async throws {
        let token = try issuer.token(sub: "log-user", clientID: "web-app")
        let response = try gateway.request("POST", "/api/orders?secret=q", headers: [("Host", "api.test"), ("Authorization", "Bearer \(token)")],
                                           body: Array("hello".utf8))
        #expect(response.status == 200)
        let entry = try #require(try await entries(path: "/api/orders").first)
        #expect(entry["status"] as? Int == 200)
        #expect(entry["bytes_in"] as? Int == 5)
        #expect(entry["bytes_out"] as? Int == response.body.count)
        #expect(entry["client"] as? String == "127.0.0.1")
        #expect(entry["host"] as? String == "api.test")
        #expect(entry["method"] as? String == "POST")
        #expect(entry["route"] as? String == "api")
        #expect(entry["subject"] as? String == "log-user")
        #expect(entry["client_id"] as? String == "web-app")
        #expect(entry["request_id"] as? String == response.header("x-request-id"))
        #expect(entry["upstream"] as? String == upstream.address)
        let duration = try #require(entry["duration_ms"] as? Double), upstreamTime = try #require(entry["upstream_ms"] as? Double)
        #expect(duration > 0 && upstreamTime > 0 && upstreamTime <= duration)
        #expect(!gateway.process.output.contains("secret=q"))
    }

    @Test("a request refused before routing (no route, a bad target) names its client too")
    func refusedBeforeRouting() async throws {
        #expect(try gateway.request("GET", "/nothing-here").status == 404)
        #expect(try gateway.request("GET", "/api/%2e%2e/x").status == 400)
        for path in ["/nothing-here", "/api/%2e%2e/x"] {
            let entry = try #require(try await entries(path: path).first)
            #expect(entry["client"] as? String == "127.0.0.1", "\(entry)")
            #expect(entry["route"] == nil)
        }
    }

    @Test("a request the parser refuses (an unknown method) has a line too: method and path '-', its client, 400, malformed_request; and it is counted")
    func malformedRequest() async throws {
        let client = try gateway.client(timeout: 5)
        try client.send("BREW /pot HTTP/1.1\r\nHost: api.test\r\n\r\n")
        #expect(try client.readResponse().status == 400)
        let entry = try #require(try await entries(path: "-").first { $0["reason"] as? String == "malformed_request" })
        #expect(entry["method"] as? String == "-" && entry["status"] as? Int == 400 && entry["client"] as? String == "127.0.0.1", "\(entry)")
        #expect(try gateway.metrics().contains(#"portcullis_http_requests_total{route="_unmatched",method="other",code="400"}"#))
    }

    /// The build before reset such streams without a line: a client probing with malformed
    /// HTTP/2 heads left no trace in the access log.
    @Test("an HTTP/2 stream reset for a malformed head has a line too, whether the gateway's rules or swift-nio-http2's refused it (a raw space in :path, an upper-case field name): method and path '-', its client, 400, malformed_request; and it is counted", arguments: [
        [[":method", "GET"], [":scheme", "http"], [":path", "/api/x y"], [":authority", "api.test"]],
        [[":method", "GET"], [":scheme", "http"], [":path", "/api/x"], [":authority", "api.test"], ["X-Upper", "1"]],
    ])
    func malformedHTTP2Stream(_ fields: [[String]]) async throws {
        let json = String(decoding: try JSONSerialization.data(withJSONObject: fields), as: UTF8.self)
        let seen = try HTTP2GatewayTests.peer("raw", port: gateway.port, [json])
        #expect((seen["resets"] as? [String: Int])?["1"] == 1, "\(seen)") // PROTOCOL_ERROR
        let entry = try #require(try await entries(path: "-").first { $0["reason"] as? String == "malformed_request" })
        #expect(entry["method"] as? String == "-" && entry["status"] as? Int == 400 && entry["client"] as? String == "127.0.0.1", "\(entry)")
        #expect(try gateway.metrics().contains(#"portcullis_http_requests_total{route="_unmatched",method="other",code="400"} 1"#))
    }

    @Test("a refused request's line counts the error body the gateway wrote")
    func refusedRequest() async throws {
        let response = try gateway.request("GET", "/api/refused")
        #expect(response.status == 401)
        let entry = try #require(try await entries(path: "/api/refused").first)
        #expect(entry["status"] as? Int == 401)
        #expect(entry["bytes_out"] as? Int == response.body.count && response.body.count > 0)
        #expect(entry["bytes_in"] as? Int == 0)
        #expect(entry["reason"] is String)
        #expect(entry["upstream_ms"] == nil)
    }
}

/// `access_log: {query: true}` keeps the query string in the logged path (it is left out by default).
@Suite("gateway: access log with queries")
struct AccessLogQueryTests {
    @Test("with access_log.query the path is logged with its query string")
    func queryIsKeptWhenConfigured() async throws {
        let upstream = try await TestUpstream.start()
        let address = upstream.address
        let gateway = try await GatewayProcess.start(logArguments: ["--log-level", "warning", "--log-format", "json"]) { port, adminPort, _ in
            """
            listen: 127.0.0.1:\(port)
            admin_listen: 127.0.0.1:\(adminPort)
            event_loops: 1
            access_log: {enabled: true, query: true}
            routes:
              - {name: open, path_prefix: /open, upstream: {targets: [\(address)]}}
            """
        }
        try await withCleanup(gateway, { await $0.stop(); await upstream.stop() }) { gateway in
            let status = try gateway.request("GET", "/open/search?q=portcullis&page=2").status
            #expect(status == 200)
            let logged = try await Poll.until(timeout: .seconds(5)) {
                gateway.process.output.split(separator: "\n").contains { line in
                    let entry = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
                    return entry?["logger"] as? String == "portcullis.access" && entry?["path"] as? String == "/open/search?q=portcullis&page=2"
                }
            }
            #expect(logged, "\(gateway.process.output)")
        }
    }
}

/// The `text` log format (the default) of a real gateway: values a client chooses cannot end a
/// line or carry terminal escapes. The build before wrote them raw (swift-log's stream handler):
/// a token whose `sub` held a line break forged a whole log line of the attacker's choosing, and
/// an unknown `kid` did the same in the control plane's log (an attacker review).
@Suite("gateway: text log lines")
struct TextLogTests {
    @Test("a token's subject with a line break, an escape sequence and key=value text stays one quoted field of one access-log line")
    func subjectCannotForgeLines() async throws {
        let upstream = try await TestUpstream.start()
        let issuer = try TestIssuer()
        let upstreamAddress = upstream.address
        let gateway = try await GatewayProcess.start { port, adminPort, directory in
            """
            listen: 127.0.0.1:\(port)
            admin_listen: 127.0.0.1:\(adminPort)
            event_loops: 1
            \((try? issuer.issuersYAML(directory: directory)) ?? "")
            routes:
              - {name: api, path_prefix: /api, upstream: {targets: [\(upstreamAddress)]}, auth: {type: jwt}}
            """
        }
        let forged = "mallory\n2026-12-06T00:00:00+0000 error portcullis.access : status=200 subject=admin [PortcullisGateway] FORGED\u{1B}[2J"
        let token = try issuer.token(sub: forged, clientID: "web-app")
        #expect(try gateway.request("GET", "/api/forge", headers: [("Authorization", "Bearer \(token)")]).status == 200)
        _ = try await Poll.until(timeout: .seconds(5)) { gateway.process.output.contains("/api/forge") }
        let output = gateway.process.output
        await gateway.stop()
        await upstream.stop()
        let lines = output.split(separator: "\n").filter { $0.contains("FORGED") }
        #expect(lines.count == 1, "\(lines)")
        #expect(lines.first?.contains("path=/api/forge") == true, "the forged text is not part of the request's own line: \(lines)")
        #expect(lines.first?.contains(#"subject="mallory\n2026-12-06T00:00:00+0000 error"#) == true, "\(lines)")
        #expect(!output.contains("\u{1B}"), "a raw escape sequence reached the log")
    }

    @Test("text log values: control characters escaped, values with spaces, quotes or = quoted")
    func escaping() {
        #expect(TextLogHandler.escape("plain-value", quoting: true) == "plain-value")
        #expect(TextLogHandler.escape("a b=c", quoting: true) == #""a b=c""#)
        #expect(TextLogHandler.escape("say \"hi\"\\", quoting: true) == #""say \"hi\"\\""#)
        #expect(TextLogHandler.escape("x\ny\u{1B}[2J\u{2028}\u{85}", quoting: false) == #"x\ny\u{1b}[2J\u{2028}\u{85}"#)
        #expect(TextLogHandler.escape("", quoting: true) == #""""#)
        #expect(TextLogHandler.escape("admin\u{202E}txt.exe", quoting: false) == #"admin\u{202e}txt.exe"#)
    }

    /// The build before wrote these raw in JSON (valid JSON, but a terminal showed another value
    /// and line-splitting readers broke the line: an attacker review).
    @Test("JSON log values escape what the text format does: control characters, C1 controls, line and paragraph separators, bidirectional overrides; the rest stays as it is")
    func jsonEscaping() throws {
        let value = "a\u{1B}b\u{85}c\u{2028}d\u{2029}e\u{202E}f\u{2066}g\u{7F}h\"\\ é"
        let quoted = JSONLogHandler.quote(value)
        #expect(quoted == #""a\u001bb\u0085c\u2028d\u2029e\u202ef\u2066g\u007fh\"\\ é""#, "\(quoted)")
        let decoded = try JSONSerialization.jsonObject(with: Data(quoted.utf8), options: .fragmentsAllowed) as? String
        #expect(decoded == value)
    }
}
