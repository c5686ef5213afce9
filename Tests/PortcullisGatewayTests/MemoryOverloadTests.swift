@testable import PortcullisGateway
import Foundation
import PortcullisTestSupport
import Testing

/// The overload guard against real processes: a gateway, the HTTP/2 upstream of
/// `HTTP2UpstreamFaultTests` (`Scripts/h2_upstream.py`), and HTTP/2 clients that keep their
/// windows shut (`Scripts/overload_peer.py`), which make the gateway hold what the upstream sends.
/// The peer's probe asks for a path no route matches, so that the gateway answers it (404) without
/// the upstream, which the attack keeps busy.
@Suite("memory overload", .serialized)
struct MemoryOverloadTests {
    static let peerScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/overload_peer.py").path

    static func config(port: Int, adminPort: Int, upstreamPort: Int, overload: String, http1Upstream: Int? = nil) -> String {
        """
        listen: 127.0.0.1:\(port)
        admin_listen: 127.0.0.1:\(adminPort)
        event_loops: 1
        limits: {response_write_timeout: 60s}
        overload: \(overload)
        routes:
          - {name: big, path_prefix: /big-data, upstream: {targets: [127.0.0.1:\(upstreamPort)], protocol: h2c}}
          - {name: ok, path_prefix: /ok, upstream: {targets: [127.0.0.1:\(upstreamPort)], protocol: h2c}}
        \(http1Upstream.map { "  - {name: h1, path_prefix: /h1, upstream: {targets: [127.0.0.1:\($0)]}}" } ?? "")
        """
    }

    /// What the gateway's resident memory settles at after a few requests, with the guard off.
    static func baselineMemory(upstreamPort: Int) async throws -> Int {
        let gateway = try await GatewayProcess.start { port, adminPort, _ in
            config(port: port, adminPort: adminPort, upstreamPort: upstreamPort, overload: "{memory_limit: off}")
        }
        var resident = 0
        try await withCleanup(gateway, { await $0.stop() }) { gateway in
            for _ in 0..<5 { #expect(try HTTP2UpstreamFaultTests.curl(port: gateway.port, "/ok").stdout == "200") }
            try await Task.sleep(for: .milliseconds(600))
            resident = Int(try #require(PrometheusText.sample(try gateway.metrics(), "portcullis_memory_resident_bytes")))
        }
        return resident
    }

    /// Runs `body` with the HTTP/2 upstream and a gateway whose `overload.memory_limit` is
    /// `headroom` over its resident memory after a few requests (its `overload:` otherwise `overload`).
    static func withOverloadGateway(headroom: Int, overload: String, http1Upstream: Int? = nil,
                                    _ body: (GatewayProcess) async throws -> Void) async throws {
        let (upstream, upstreamPort) = try await HTTP2UpstreamFaultTests.startUpstream()
        try await withCleanup(upstream, { _ = await $0.terminate() }) { _ in
            let limit = try await baselineMemory(upstreamPort: upstreamPort) + headroom
            let gateway = try await GatewayProcess.start { port, adminPort, _ in
                config(port: port, adminPort: adminPort, upstreamPort: upstreamPort, overload: "{memory_limit: \(limit), \(overload)}",
                       http1Upstream: http1Upstream)
            }
            try await withCleanup(gateway, { await $0.stop() }, body)
        }
    }

    static func attack(_ gateway: GatewayProcess, connections: Int, seconds: Int) throws -> ManagedProcess {
        try ManagedProcess(executable: "/usr/bin/env",
                           arguments: ["python3", peerScript, String(gateway.port), "/big-data", String(connections), "100", String(seconds)],
                           logFile: gateway.directory + "/attack.log")
    }

    static func report(_ attack: ManagedProcess, _ gateway: GatewayProcess) -> (seen: [String: Any], text: String) {
        let output = attack.output
        let line = output.split(separator: "\n").last { $0.hasPrefix("{") }.map(String.init) ?? ""
        let seen = (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]) ?? [:]
        return (seen, "\(output.suffix(3000))\n--- gateway ---\n\(gateway.process.output.suffix(1500))")
    }

    /// TCP connections established to `port` on loopback (`ss`).
    static func established(to port: Int) throws -> Int {
        let result = try runCommand("/usr/bin/env", ["ss", "-Htn", "state", "established", "dst", "127.0.0.1:\(port)"])
        return result.stdout.split(separator: "\n").count
    }

    /// The probe's answers: [seconds, status, error].
    static func probe(_ seen: [String: Any]) -> [[Any]] { seen["probe"] as? [[Any]] ?? [] }

    static func isOverloadedAnswer(_ answer: [Any]) -> Bool {
        (answer[1] as? Int) == 503 && (answer[2] as? String) == "overloaded"
    }

    /// The node answers a new connection (404: the path matches no route) and is ready, within 10 s.
    static func expectRecovered(_ gateway: GatewayProcess, _ report: String) async throws {
        #expect(try await Poll.until(timeout: .seconds(10)) {
            (try? HTTP2UpstreamFaultTests.curl(port: gateway.port, "/probe").stdout) == "404"
        }, "\(report)")
        #expect(try gateway.readiness().status == 200)
        #expect(PrometheusText.sample(try gateway.metrics(), "portcullis_overloaded") == 0)
    }

    @Test("HTTP/2 clients keeping their windows shut drive the gateway's memory to overload.memory_limit: their streams are cut after overload.response_write_timeout, not limits.response_write_timeout (60 s); a client is meanwhile answered 503 overloaded and sent GOAWAY, and new connections are answered again as the memory falls")
    func stalledStreamsAreShedAtTheLimit() async throws {
        try await Self.withOverloadGateway(headroom: 24 << 20, overload: "response_write_timeout: 1s") { gateway in
            let attack = try Self.attack(gateway, connections: 3, seconds: 12)
            #expect(await attack.waitForExit(timeout: .seconds(40)) == 0)
            let (seen, report) = Self.report(attack, gateway)
            let metrics = try gateway.metrics()
            #expect(try #require(PrometheusText.sample(metrics, "portcullis_overload_shed_total")) >= 20, "\(report)")
            // Streams cut by the guard (CANCEL), not by the queued-frame bound (ENHANCE_YOUR_CALM, 11).
            let resets = seen["resets"] as? [String: Int] ?? [:]
            #expect(resets.filter { $0.key != "11" }.values.reduce(0, +) >= 20, "\(report)")
            let firstCut = (seen["first_reset_s"] as? [String: Double] ?? [:]).filter { $0.key != "11" }.values.min() ?? .infinity
            #expect(firstCut < 10, "\(report)")
            let probe = Self.probe(seen)
            #expect((probe.first?[1] as? Int) == 404, "\(report)")
            #expect(probe.contains(where: Self.isOverloadedAnswer), "the probe was never refused: \(report)")
            // Refused, its connection is sent GOAWAY (NO_ERROR), so that its client reconnects elsewhere.
            #expect(seen["probe_goaway"] as? Int == 0, "\(report)")
            #expect(try #require(PrometheusText.sample(metrics, #"portcullis_overload_refused_total{what="request"}"#)) >= 1)
            #expect(gateway.process.output.contains("overloaded: resident memory reached overload.memory_limit"), "\(report)")
            #expect(gateway.process.output.contains("no longer overloaded"), "\(report)")
            try await Self.expectRecovered(gateway, report)
        }
    }

    @Test("while clients hold the gateway's memory at overload.memory_limit, the node closes each new connection at once, counted, answers a request on an open HTTP/1.1 connection 503 overloaded with Connection: close, and /readyz says it is overloaded; once they leave it accepts and is ready again")
    func overloadedNodeRefusesConnections() async throws {
        // The overload's write timeout is limits' (60 s): the clients hold the memory up, unless it
        // goes a quarter over the limit, where everything waiting is cut.
        let http1 = try await RecordingUpstream.start()
        defer { Task { await http1.stop() } }
        try await Self.withOverloadGateway(headroom: 24 << 20, overload: "response_write_timeout: 60s", http1Upstream: http1.port) { gateway in
            // A burst through an HTTP/1.1 upstream leaves idle connections in the gateway's pool.
            let burst = try runCommand("/usr/bin/env", ["curl", "-s", "--parallel", "--parallel-max", "20", "-w", " %{http_code}\n"]
                                       + (0..<40).map { "http://127.0.0.1:\(gateway.port)/h1/\($0)" })
            #expect(burst.stdout.components(separatedBy: " 200\n").count - 1 == 40, "\(burst.stdout)")
            let pooled = try Self.established(to: http1.port)
            #expect(pooled >= 5, "\(pooled) pooled upstream connections after the burst")
            // An HTTP/1.1 client on a kept-alive connection from before.
            let keptAlive = try gateway.client()
            defer { keptAlive.close() }
            #expect(try keptAlive.request("GET", "/probe", headers: [("Host", "gw.test")]).status == 404)
            let attack = try Self.attack(gateway, connections: 3, seconds: 12)
            // Each seen while the gauge says overloaded (each check is tried again until then).
            var readinessRefused = false, connectionClosed = false
            var refusedOnKeptAlive: HTTPTestResponse?
            let all = try await Poll.until(timeout: .seconds(11)) {
                guard (try? gateway.metrics()).flatMap({ PrometheusText.sample($0, "portcullis_overloaded") }) == 1 else { return false }
                if !readinessRefused, let readiness = try? gateway.readiness() {
                    readinessRefused = readiness.status == 503 && String(decoding: readiness.body, as: UTF8.self).contains("overloaded")
                }
                if !connectionClosed {
                    connectionClosed = (try? HTTP2UpstreamFaultTests.curl(port: gateway.port, "/probe").stdout) == "000"
                }
                if refusedOnKeptAlive == nil, let answer = try? keptAlive.request("GET", "/probe", headers: [("Host", "gw.test")]),
                   answer.status == 503 {
                    refusedOnKeptAlive = answer
                }
                return readinessRefused && connectionClosed && refusedOnKeptAlive != nil
            }
            #expect(all, "readyz \(readinessRefused), connection \(connectionClosed), kept-alive \(refusedOnKeptAlive != nil): \(Self.report(attack, gateway).text)")
            if let refused = refusedOnKeptAlive {
                #expect(refused.header("Retry-After") == "1" && refused.header("Connection") == "close", "\(refused.headers)")
                #expect(String(decoding: refused.body, as: UTF8.self).contains("\"overloaded\""))
                #expect(keptAlive.waitForClose())
            }
            #expect(try #require(PrometheusText.sample(try gateway.metrics(), #"portcullis_overload_refused_total{what="connection"}"#)) >= 1)
            // Overloaded, the idle pooled connections are closed (pool_idle_timeout would drop them only when asked for one).
            #expect(try Self.established(to: http1.port) == 0)
            #expect(await attack.waitForExit(timeout: .seconds(40)) == 0)
            let (seen, report) = Self.report(attack, gateway)
            #expect(Self.probe(seen).contains(where: Self.isOverloadedAnswer), "\(report)")
            // The clients gone, the memory falls (trimmed) and the node takes connections again.
            try await Self.expectRecovered(gateway, report)
        }
    }
}
