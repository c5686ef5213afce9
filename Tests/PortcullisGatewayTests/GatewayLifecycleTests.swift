import Foundation
import PortcullisTestSupport
import Testing

@Suite("gateway: upstream failures, streaming, lifecycle, TLS, config errors", .serialized)
struct GatewayLifecycleTests {
    /// A test upstream with a gateway running `simpleConfig` in front of it (stop both).
    static func startSimple(limits: String = "") async throws -> (upstream: TestUpstream, gateway: GatewayProcess) {
        let upstream = try await TestUpstream.start()
        let gateway = try await GatewayProcess.start { port, admin, _ in
            Self.simpleConfig(port: port, adminPort: admin, targets: [upstream.address], limits: limits)
        }
        return (upstream, gateway)
    }

    static func simpleConfig(port: Int, adminPort: Int, targets: [String], extraRoute: String = "", limits: String = "") -> String {
        """
        listen: 127.0.0.1:\(port)
        admin_listen: 127.0.0.1:\(adminPort)
        event_loops: 1
        \(limits)
        routes:
          - name: app
            path_prefix: /
            max_body_bytes: 2GiB
            upstream:
              targets: [\(targets.joined(separator: ", "))]
              connect_timeout: 500ms
              response_header_timeout: 1s
              eject_for: 2s
        \(extraRoute)
        """
    }

    @Test("a dead target is ejected for eject_for: traffic skips it even once it is back, then it is used again; alone it gives 502")
    func ejectionAndRecovery() async throws {
        let live = try await TestUpstream.start()
        let deadPort = try FreePort.allocate()
        let gateway = try await GatewayProcess.start { port, admin, _ in
            Self.simpleConfig(port: port, adminPort: admin, targets: [live.address, "127.0.0.1:\(deadPort)"])
        }
        defer { Task { await gateway.stop(); await live.stop() } }
        func sample(_ series: String) throws -> Double? { PrometheusText.sample(try gateway.metrics(), series) }
        #expect(try sample("portcullis_upstream_ejected_targets{route=\"app\"}") == 0)

        // Connect failures are retried once on the other target, so no client sees an error.
        // The ejection starts between `before` and `after`, so it lasts at least until before + 2 s.
        let before = ContinuousClock.now
        var statuses: [Int] = []
        for index in 0..<20 { statuses.append(try gateway.request("GET", "/e/\(index)").status) }
        let after = ContinuousClock.now
        #expect(statuses.allSatisfy { $0 == 200 })
        #expect(try sample("portcullis_upstream_failures_total{route=\"app\",kind=\"connect_failed\"}") == 1)
        // One failed connect, one ejection, in force now: no later request tried the dead target.
        #expect(try sample("portcullis_upstream_ejections_total{route=\"app\"}") == 1)
        #expect(try sample("portcullis_upstream_ejected_targets{route=\"app\"}") == 1)

        // The target comes back on the same port while still ejected: round robin would give it
        // half the requests, the ejection gives it none.
        let revived = try await TestUpstream.start(port: deadPort)
        defer { Task { await revived.stop() } }
        for index in 0..<10 { #expect(try gateway.request("GET", "/skip/\(index)").status == 200) }
        #expect(ContinuousClock.now - before < .milliseconds(1900), "the check ran past the ejection")
        #expect(revived.connectionCount == 0 && revived.requestCount == 0, "an ejected target was tried")

        // After eject_for (2 s from the failure) the ejection ends and the target takes its share again.
        try await Task.sleep(until: after + .milliseconds(2200))
        #expect(try sample("portcullis_upstream_ejected_targets{route=\"app\"}") == 0)
        for index in 0..<10 { #expect(try gateway.request("GET", "/back/\(index)").status == 200) }
        #expect(revived.requestCount >= 4, "the target was not used again after its ejection ended: \(revived.requestCount) of 10")
        #expect(try sample("portcullis_upstream_ejections_total{route=\"app\"}") == 1)
        await revived.stop()

        // With only the dead target, the client gets a clear 502, and the target is ejected.
        let onlyDeadPort = try FreePort.allocate()
        let onlyDead = try await GatewayProcess.start { port, admin, _ in
            Self.simpleConfig(port: port, adminPort: admin, targets: ["127.0.0.1:\(onlyDeadPort)"])
        }
        defer { Task { await onlyDead.stop() } }
        let failed = try onlyDead.request("GET", "/x")
        #expect(failed.status == 502)
        #expect(failed.json["error"] as? String == "bad_gateway")
        #expect(PrometheusText.sample(try onlyDead.metrics(), "portcullis_upstream_ejected_targets{route=\"app\"}") == 1)

        // The target comes back on the same port: after the ejection period it is used again.
        let back = try await TestUpstream.start(port: onlyDeadPort)
        defer { Task { await back.stop() } }
        try await Task.sleep(for: .milliseconds(2200))
        #expect(PrometheusText.sample(try onlyDead.metrics(), "portcullis_upstream_ejected_targets{route=\"app\"}") == 0)
        #expect(try onlyDead.request("GET", "/x").status == 200)
        #expect(back.requestCount == 1)
    }

    @Test("an upstream that does not answer in time gives 504")
    func responseTimeout() async throws {
        let slow = try await TestUpstream.start()
        let gateway = try await GatewayProcess.start { port, admin, _ in
            Self.simpleConfig(port: port, adminPort: admin, targets: [slow.address])
        }
        defer { Task { await gateway.stop(); await slow.stop() } }
        let response = try gateway.request("GET", "/delay/3000")
        #expect(response.status == 504)
        #expect(response.json["error"] as? String == "upstream_timeout")
        #expect(try gateway.request("GET", "/delay/10").status == 200)
    }

    @Test("an upstream that closes without answering gives 502")
    func upstreamCloses() async throws {
        let (upstream, gateway) = try await Self.startSimple()
        defer { Task { await gateway.stop(); await upstream.stop() } }
        #expect(try gateway.request("POST", "/close", body: Array("x".utf8)).status == 502)
        #expect(try gateway.request("GET", "/fine").status == 200)
    }

    @Test("a pooled connection closed before the answer: a GET is retried once on a fresh connection, a POST is not")
    func retryAfterPooledClose() async throws {
        let (upstream, gateway) = try await Self.startSimple()
        defer { Task { await gateway.stop(); await upstream.stop() } }
        // Each /warm leaves its upstream connection in the gateway's pool for the next request.
        #expect(try gateway.request("GET", "/warm").status == 200)
        let beforeGet = upstream.requestCount
        #expect(try gateway.request("GET", "/close").status == 502)
        // The pooled attempt, then one on a fresh connection (which the upstream closes too).
        #expect(upstream.requestCount - beforeGet == 2)
        #expect(try gateway.request("GET", "/warm").status == 200)
        let beforePost = upstream.requestCount
        #expect(try gateway.request("POST", "/close", body: Array("x".utf8)).status == 502)
        // The upstream may have acted on a POST it received: never sent twice.
        #expect(upstream.requestCount - beforePost == 1)
    }

    @Test("upstream framings: chunked with trailers, body until close, HEAD; a malformed response is a 502")
    func upstreamFramings() async throws {
        let (upstream, gateway) = try await Self.startSimple()
        defer { Task { await gateway.stop(); await upstream.stop() } }
        let client = try gateway.client()
        let chunked = try client.request("GET", "/raw/trailers")
        #expect(chunked.status == 200)
        #expect(String(decoding: chunked.body, as: UTF8.self) == "hello world")
        let untilClose = try client.request("GET", "/raw/until-close")
        #expect(untilClose.status == 200)
        #expect(String(decoding: untilClose.body, as: UTF8.self) == "body until close")
        let head = try client.request("HEAD", "/status/200")
        #expect(head.status == 200)
        #expect(head.body.isEmpty)
        // A HEAD answer is never framed as chunks, even when the upstream gave no length: a
        // stray last-chunk would be read as the start of the next response.
        let unframedHead = try client.request("HEAD", "/raw/until-close")
        #expect(unframedHead.status == 200)
        #expect(unframedHead.header("transfer-encoding") == nil)
        // The same client connection still works after each of them.
        #expect(try client.request("GET", "/after").status == 200)

        // An HTTP/1.0 client cannot read chunks: an unframed body ends with the connection.
        let old = try gateway.client()
        try old.send("GET /raw/until-close HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n")
        let oldResponse = try old.readResponse()
        #expect(oldResponse.status == 200)
        #expect(oldResponse.header("transfer-encoding") == nil)
        #expect(oldResponse.header("connection") == "close")
        #expect(String(decoding: oldResponse.body, as: UTF8.self) == "body until close")

        let bad = try client.request("GET", "/raw/bad-length")
        #expect(bad.status == 502)
        #expect(bad.json["error"] as? String == "bad_gateway")
        #expect(try gateway.metrics().contains("portcullis_upstream_failures_total{route=\"app\",kind=\"protocol_error\"}"))
        #expect(try gateway.request("GET", "/fine").status == 200)
    }

    /// The build before passed `gzip, chunked` on as `chunked` (the client got gzip bytes with no
    /// coding stated), and answered a malformed chunk that arrived with its head by closing the
    /// connection with nothing sent: the head, held back to leave with the body, was dropped. The
    /// head and the bad chunk come in one write, read at once on loopback.
    @Test("an upstream's transfer coding other than chunked, and a malformed chunk read with its head, are answered 502 on a connection that stays usable; a head in bare LFs is answered 502 at once, not after the response-header timeout")
    func upstreamCodingsAndEarlyBodyFaults() async throws {
        let (upstream, gateway) = try await Self.startSimple()
        defer { Task { await gateway.stop(); await upstream.stop() } }
        let client = try gateway.client()
        for name in ["gzip-coded", "huge-chunk"] {
            let response = try client.request("GET", "/raw/\(name)")
            #expect(response.status == 502, "\(name)")
            #expect(response.json["error"] as? String == "bad_gateway", "\(name)")
            #expect(response.header("transfer-encoding") == nil, "\(name)")
            #expect(try client.request("GET", "/after-\(name)").status == 200)
        }
        #expect(PrometheusText.sample(try gateway.metrics(), "portcullis_upstream_failures_total{route=\"app\",kind=\"protocol_error\"}") == 2)

        // A head in bare LFs from an upstream that keeps the connection open is refused once its
        // first line has come (502), not after response_header_timeout (1 s here: 504).
        let started = ContinuousClock.now
        let bare = try gateway.client().request("GET", "/raw/bare-lf")
        #expect(bare.status == 502 && ContinuousClock.now - started < .milliseconds(800), "\(bare.status) after \(ContinuousClock.now - started)")
        // So is one whose status line ends in CRLF and a field's line in a bare LF.
        let fieldStarted = ContinuousClock.now
        let bareField = try gateway.client().request("GET", "/raw/bare-lf-field")
        #expect(bareField.status == 502 && ContinuousClock.now - fieldStarted < .milliseconds(800),
                "\(bareField.status) after \(ContinuousClock.now - fieldStarted)")

        // Once some of the response has been written, no 502 may follow it: the connection is
        // cut, and whatever of the 200 reached the client is all it gets.
        let late = try gateway.client()
        try late.send("GET /raw/late-bad-chunk HTTP/1.1\r\nHost: t\r\n\r\n")
        let (bytes, closed) = late.readUntilClose()
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(closed)
        // A status line, not "502" anywhere: the 200's random request id holds "502" now and then.
        #expect(!text.contains("HTTP/1.1 502") && (text.isEmpty || text.hasPrefix("HTTP/1.1 200 ")), "\(text.prefix(200))")
    }

    /// The build before skipped any number of interim heads (an upstream sending them without end
    /// held the event loop until the response-header timeout) and read any chunk extensions within
    /// the line limit (1-byte chunks with 4 KB of them held a core), both found by an attacker review.
    @Test("an upstream's interim (1xx) heads past 8, and chunks carrying far more framing than data, are answered 502 on a connection that stays usable")
    func upstreamFramingFloods() async throws {
        let (upstream, gateway) = try await Self.startSimple()
        defer { Task { await gateway.stop(); await upstream.stop() } }
        let client = try gateway.client()
        let flood = try client.request("GET", "/raw/interim-flood")
        #expect(flood.status == 502)
        #expect(flood.json["error"] as? String == "bad_gateway")
        #expect(try client.request("GET", "/after-flood").status == 200)
        // The excess shows a few chunks in: a 502 when the head is still held back (it was all
        // read at once), else the response cut, never completed.
        let padded = try gateway.client()
        do {
            let response = try padded.request("GET", "/raw/extension-padded")
            #expect(response.status == 502, "the padded response was passed on: \(response.status) \(response.text.prefix(100))")
        } catch HTTPTestClientError.closed {
            // Cut: the connection closed before the body's end.
        }
        #expect(PrometheusText.sample(try gateway.metrics(), "portcullis_upstream_failures_total{route=\"app\",kind=\"protocol_error\"}") == 2)
    }

    /// The build before looked each name of a `Connection` list up in, and added it to, a list of
    /// the names so far: a list of thousands of names cost the square of its length, and one
    /// upstream response naming 16 000 held the event loop — every client on it — for 8 s in a
    /// debug build, 0.5 s in release (an attacker review); a client's request the same, within
    /// its head limit.
    @Test("a Connection field listing 15 000 names, in an upstream's response or a client's request, costs the gateway time linear in its length: answered within 2 s (the build before: 8 s, or a client timeout), the listed fields dropped and the others kept")
    func longConnectionListsCostLinearTime() async throws {
        let (upstream, gateway) = try await Self.startSimple(limits: "limits: {max_header_bytes: 96KiB}")
        defer { Task { await gateway.stop(); await upstream.stop() } }
        let started = ContinuousClock.now
        let response = try gateway.request("GET", "/raw/connection-list")
        let responseTime = ContinuousClock.now - started
        #expect(response.status == 200 && response.text == "ok")
        #expect(response.header("aaa") == nil && response.header("x-kept") == "end")
        let names = TestUpstream.manyNames(15_000)
        let requestStarted = ContinuousClock.now
        let request = try gateway.request("GET", "/echo", headers: [("Connection", names.joined(separator: ",")), ("Aab", "hop"), ("X-Kept", "end")])
        let requestTime = ContinuousClock.now - requestStarted
        #expect(request.status == 200)
        let forwarded = request.json["headers"] as? [String: [String]] ?? [:]
        #expect(forwarded["aab"] == nil && forwarded["x-kept"] == ["end"], "\(forwarded.keys.sorted())")
        // Far apart: the build before took 8 s for the response in a debug build.
        #expect(responseTime < .seconds(2) && requestTime < .seconds(2), "response \(responseTime), request \(requestTime)")
    }

    /// The build before pooled the connection as soon as the answer to HEAD ended, and the next
    /// request on it — another client's — took the body the upstream sent after that answer for
    /// its own response (response-queue poisoning).
    @Test("a body an upstream sends after its answer to HEAD never becomes another client's response: a connection whose bodyless answer framed a body is not reused")
    func bodyAfterHEADAnswerIsNobodysResponse() async throws {
        let (upstream, gateway) = try await Self.startSimple()
        defer { Task { await gateway.stop(); await upstream.stop() } }
        let head = try gateway.client().request("HEAD", "/raw/head-then-response")
        #expect(head.status == 200)
        // Another client, while the upstream still holds the stray bytes (100 ms).
        let other = try gateway.request("GET", "/account")
        #expect(other.status == 200)
        #expect(other.header("x-stray") == nil && !String(decoding: other.body, as: UTF8.self).contains("not your account"),
                "another client got the stray body: \(String(decoding: other.body, as: UTF8.self))")
        #expect((other.json["uri"] as? String) == "/account")
    }

    @Test("a 1 GiB upload streams through with bounded gateway memory; a 256 MiB download too")
    func streaming() async throws {
        let (upstream, gateway) = try await Self.startSimple()
        defer { Task { await gateway.stop(); await upstream.stop() } }

        let total = 1 << 30
        let client = try gateway.client(timeout: 120)
        try client.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: \(total)\r\n\r\n")
        let chunk = [UInt8](repeating: 7, count: 1 << 20)
        for _ in 0..<(total / chunk.count) { try client.send(chunk) }
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.json["body_bytes"] as? Int == total)

        let download = try client.request("GET", "/bytes/\(256 << 20)")
        #expect(download.body.count == 256 << 20)

        let peakKiB = Self.statusKiB(pid: gateway.process.pid, "VmHWM:")
        // Bounded: a buffering proxy would hold hundreds of MiB here.
        #expect(peakKiB > 0 && peakKiB < 200 * 1024, "peak RSS \(peakKiB) KiB")
    }

    /// A memory figure of a process (`ProcessStatus`), in KiB.
    static func statusKiB(pid: Int32, _ field: String) -> Int {
        let bytes = ProcessStatus.bytes(pid: pid, field)
        return bytes < 0 ? -1 : bytes / 1024
    }

    /// The build before served the admin port on the public event loops without bounds: 20 000
    /// pipelined scrapes on a connection that read nothing held public requests for 55 s (504)
    /// and took the gateway from 48 to 734 MB; 19 990 idle admin connections took every file
    /// descriptor (an attacker review).
    @Test("the admin port cannot starve public traffic: a connection pipelining 20 000 scrapes without reading is closed, with public requests answered meanwhile and memory bounded; connections past 128 are closed at once")
    func adminPortFloods() async throws {
        let (upstream, gateway) = try await Self.startSimple()
        defer { Task { await gateway.stop(); await upstream.stop() } }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/admin_flood.py").path
        let before = Self.statusKiB(pid: gateway.process.pid, "VmRSS:")
        let flood = try runCommand("/usr/bin/env", ["python3", script, "pipeline", String(gateway.adminPort), String(gateway.port), "20000"])
        let pipelined = try #require(try JSONSerialization.jsonObject(with: Data(flood.stdout.utf8)) as? [String: Any], "\(flood.stdout) \(flood.stderr)")
        #expect(pipelined["closed"] as? Bool == true, "\(pipelined)")
        #expect((pipelined["public_status"] as? [Int])?.allSatisfy { $0 == 200 } == true, "\(pipelined)")
        #expect((pipelined["public_ms"] as? [Double])?.allSatisfy { $0 < 5000 } == true, "\(pipelined)")
        let after = Self.statusKiB(pid: gateway.process.pid, "VmRSS:")
        #expect(after - before < 100_000, "the gateway grew by \(after - before) KiB")

        let clients = try (0..<200).map { _ in try HTTPTestClient(port: gateway.adminPort, timeout: 5) }
        try await Task.sleep(for: .milliseconds(500))
        // 128 kept (one or two fewer if a connection of the test's own is still open), the rest closed.
        let closedAtOnce = clients.filter(\.closedByPeer).count
        #expect((72...74).contains(closedAtOnce), "\(closedAtOnce) of 200 closed at once")
        #expect(try gateway.request("GET", "/after-idle").status == 200)
        clients.forEach { $0.close() }
        // Once they are gone, a scraper is served as before.
        #expect(try await Poll.until { (try? gateway.admin("/metrics").status) == 200 }, "a scrape after the idle connections closed")
    }

    @Test("closed client connections give their memory back (no per-connection leak)")
    func connectionChurn() async throws {
        let (upstream, gateway) = try await Self.startSimple()
        defer { Task { await gateway.stop(); await upstream.stop() } }
        func churn(_ count: Int) throws {
            for index in 0..<count {
                let client = try gateway.client()
                #expect(try client.request("GET", "/c/\(index)", headers: [("Connection", "close")]).status == 200)
                client.close()
            }
        }
        try churn(500)  // warm-up: upstream pool, allocator arenas
        let before = Self.statusKiB(pid: gateway.process.pid, "VmRSS:")
        try churn(4000)
        let after = Self.statusKiB(pid: gateway.process.pid, "VmRSS:")
        // A handler kept alive by its context cost ~0.85 KiB per connection (3.4 MiB here).
        #expect(before > 0 && after - before < 1024, "RSS grew \(after - before) KiB over 4000 connections")
    }

    @Test("a body over the route's limit: 413 before it is read")
    func bodyLimit() async throws {
        let upstream = try await TestUpstream.start()
        let gateway = try await GatewayProcess.start { port, admin, _ in
            """
            listen: 127.0.0.1:\(port)
            admin_listen: 127.0.0.1:\(admin)
            routes:
              - name: small
                path_prefix: /
                max_body_bytes: 1KiB
                upstream: {targets: [\(upstream.address)]}
            """
        }
        defer { Task { await gateway.stop(); await upstream.stop() } }
        let declared = try gateway.request("POST", "/x", body: [UInt8](repeating: 1, count: 2048))
        #expect(declared.status == 413)
        let client = try gateway.client()
        try client.send("POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + String(repeating: "a", count: 2048) + "\r\n0\r\n\r\n")
        #expect(try client.readResponse().status == 413)
        #expect(upstream.requestCount == 0)
    }

    @Test("SIGTERM: in-flight requests finish, new connections are refused, exit 0")
    func drainOnSigterm() async throws {
        let (upstream, gateway) = try await Self.startSimple()
        defer { Task { await upstream.stop() } }
        let inFlight = Task.detached { try gateway.request("GET", "/delay/800") }
        try await Task.sleep(for: .milliseconds(200))
        gateway.process.signal(SIGTERM)
        try await Task.sleep(for: .milliseconds(200))
        #expect(throws: (any Error).self) { _ = try gateway.request("GET", "/after") }
        let response = try await inFlight.value
        #expect(response.status == 200)
        #expect(await gateway.process.waitForExit(timeout: .seconds(10)) == 0)
    }

    @Test("SIGHUP reloads routes without dropping an open connection; a broken file keeps the old routes")
    func reloadOnSighup() async throws {
        let (upstream, gateway) = try await Self.startSimple()
        defer { Task { await gateway.stop(); await upstream.stop() } }
        let client = try gateway.client()
        #expect(try client.request("GET", "/old").status == 200)

        // `event_loops` is read at start only: a file that changed it would not reload.
        let newConfig = """
        listen: 127.0.0.1:\(gateway.port)
        admin_listen: 127.0.0.1:\(gateway.adminPort)
        event_loops: 1
        routes:
          - name: only-new
            path_prefix: /new
            upstream: {targets: [\(upstream.address)]}
        """
        try newConfig.write(toFile: gateway.configFile, atomically: true, encoding: .utf8)
        gateway.process.signal(SIGHUP)
        try await waitUntil { (try? gateway.request("GET", "/old").status) == 404 }
        #expect(try client.request("GET", "/new/x").status == 200)
        #expect(try client.request("GET", "/old").status == 404)

        try "routes: [ {name: broken".write(toFile: gateway.configFile, atomically: true, encoding: .utf8)
        gateway.process.signal(SIGHUP)
        try await Task.sleep(for: .milliseconds(500))
        #expect(try client.request("GET", "/new/y").status == 200)
        #expect(gateway.process.output.contains("reload failed"))
    }

    @Test("TLS listener serves HTTPS with the configured certificate")
    func tlsListener() async throws {
        let upstream = try await TestUpstream.start()
        let directory = try TemporaryDirectory.make(prefix: "portcullis-tls")
        let openssl = try runCommand("/usr/bin/openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                                          "-keyout", directory + "/key.pem", "-out", directory + "/cert.pem",
                                                          "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-days", "1"])
        #expect(openssl.status == 0)
        let gateway = try await GatewayProcess.start { port, admin, _ in
            """
            listen: 127.0.0.1:\(port)
            admin_listen: 127.0.0.1:\(admin)
            tls:
              certificate_chain: \(directory)/cert.pem
              private_key: \(directory)/key.pem
            routes:
              - name: app
                path_prefix: /
                upstream: {targets: [\(upstream.address)]}
            """
        }
        defer { Task { await gateway.stop(); await upstream.stop() } }
        let curl = try runCommand("/usr/bin/curl", ["-sS", "--cacert", directory + "/cert.pem", "--resolve", "localhost:\(gateway.port):127.0.0.1",
                                                    "https://localhost:\(gateway.port)/secure"])
        #expect(curl.status == 0, "\(curl.stderr)")
        #expect(curl.stdout.contains("\"x-forwarded-proto\":[\"https\"]"))
        // Plain HTTP on the TLS port does not get through.
        #expect(((try? gateway.request("GET", "/plain"))?.status ?? 0) != 200)
    }

    @Test("slow request heads are cut off after header_read_timeout, on a new connection and after a response")
    func slowloris() async throws {
        // The idle timeout is far longer, so only the head-read timeout can close within the bound.
        let (upstream, gateway) = try await Self.startSimple(limits: "limits: {header_read_timeout: 500ms, idle_timeout: 20s}")
        defer { Task { await gateway.stop(); await upstream.stop() } }
        let fresh = try gateway.client()
        try fresh.send("GET /slow HTTP/1.1\r\nHost: t\r\n")
        var start = ContinuousClock.now
        #expect(fresh.waitForClose())
        #expect(ContinuousClock.now - start < .seconds(3))

        let reused = try gateway.client()
        #expect(try reused.request("GET", "/first").status == 200)
        try reused.send("GET /slow HTTP/1.1\r\nHost: t\r\n")
        start = ContinuousClock.now
        #expect(reused.waitForClose())
        #expect(ContinuousClock.now - start < .seconds(3))
    }

    @Test("max_connections: connections beyond it are closed at once and counted; a freed slot is usable again")
    func maxConnections() async throws {
        let (upstream, gateway) = try await Self.startSimple(limits: "limits: {max_connections: 2}")
        defer { Task { await gateway.stop(); await upstream.stop() } }
        let first = try gateway.client(timeout: 3), second = try gateway.client(timeout: 3)
        #expect(try first.request("GET", "/one").status == 200)
        #expect(try second.request("GET", "/two").status == 200)
        // The third is accepted by the kernel and closed by the gateway without an answer.
        let third = try gateway.client(timeout: 3)
        try? third.send(HTTPTestClient.format("GET", "/three"))
        let refused = third.drain()
        #expect(refused.bytes == 0 && refused.closed, "\(refused)")
        #expect(PrometheusText.sample(try gateway.metrics(), "portcullis_rejected_connections_total") == 1)
        // The two admitted connections still work; the upstream saw only their requests.
        #expect(try first.request("GET", "/one-again").status == 200)
        #expect(upstream.requestCount == 3)
        // Closing one frees its slot.
        second.close()
        try await waitUntil { PrometheusText.sample(try gateway.metrics(), "portcullis_open_connections") == 1 }
        let fourth = try gateway.client(timeout: 3)
        #expect(try fourth.request("GET", "/four").status == 200)
    }

    @Test("idle_timeout: a keep-alive connection with no request for that long is closed, one in use is not")
    func idleTimeout() async throws {
        // The head-read timeout is far longer, so only the idle timeout can close within the bounds.
        let (upstream, gateway) = try await Self.startSimple(limits: "limits: {idle_timeout: 1s, header_read_timeout: 30s}")
        defer { Task { await gateway.stop(); await upstream.stop() } }
        // In use: a request every 400 ms for 2.4 s keeps the connection open past the timeout.
        let busy = try gateway.client()
        for index in 0..<6 {
            #expect(try busy.request("GET", "/busy/\(index)").status == 200)
            try await Task.sleep(for: .milliseconds(400))
        }
        #expect(try busy.request("GET", "/busy/last").status == 200)
        // Idle after its response: closed after about the timeout, not before.
        let start = ContinuousClock.now
        #expect(busy.waitForClose())
        let idle = ContinuousClock.now - start
        #expect(idle >= .milliseconds(900) && idle < .seconds(3), "closed after \(idle)")
    }

    @Test("configuration errors name the file, line and key and exit non-zero",
          arguments: [
            ("listen: 127.0.0.1:1\nroutes:\n  - name: a\n    path_prefix: /\n    upstream: {targets: [127.0.0.1:1]}\n    bogus: 1\n", ":6:", "routes[0].bogus"),
            ("listen: nope\nroutes: []\n", ":1:", "listen"),
            ("listen: 127.0.0.1:1\nroutes:\n  - name: a\n    upstream: {targets: [127.0.0.1:1]}\n    auth: {type: jwt}\n", ":3:", "no issuers"),
            ("listen: 127.0.0.1:1\nroutes:\n  - name: a\n    upstream: {targets: []}\n", ":4:", "routes[0].upstream.targets"),
            // A space in the id made every acknowledgement of the node malformed (an attacker review).
            ("node_id: gw 1\nlisten: 127.0.0.1:1\nroutes: []\n", ":1:", "node_id: may hold only printable ASCII without spaces"),
          ])
    func configErrors(_ yaml: String, _ location: String, _ mention: String) throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-badconf")
        let file = directory + "/gateway.yaml"
        try yaml.write(toFile: file, atomically: true, encoding: .utf8)
        let result = try runCommand(PortcullisBinary.path, ["gateway", "--config", file])
        #expect(result.status == 2)
        #expect(result.stderr.contains(file + location), "\(result.stderr)")
        #expect(result.stderr.contains(mention), "\(result.stderr)")
    }
}

/// Polls `condition` until it holds; records an issue if it never does.
func waitUntil(timeout: Duration = .seconds(5), _ condition: () throws -> Bool) async throws {
    if try await !Poll.until(timeout: timeout, condition) { Issue.record("condition not met within \(timeout)") }
}
