import Foundation
import PortcullisTestSupport
import Testing

/// Clients whose requests share the gateway's pooled connections to one HTTP/1.1 upstream, behind
/// a real gateway process, in front of Python's http.server answering GET, HEAD and DELETE without
/// reading their bodies (Scripts/body_ignoring_upstream.py), as its SimpleHTTPRequestHandler does.
@Suite("upstream connections shared by clients", .serialized)
struct UpstreamConnectionSharingTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/body_ignoring_upstream.py").path

    /// The upstream on a free port, and a gateway (one event loop, so every request meets the same
    /// pool) with a JWT route, a public route and a route whose upstream idle timeout is 1 s.
    static func withUpstreamAndGateway(_ body: (ManagedProcess, Int, GatewayProcess, TestIssuer) async throws -> Void) async throws {
        let upstreamPort = try FreePort.allocate()
        let directory = try TemporaryDirectory.make(prefix: "body-ignoring-upstream")
        let upstream = try ManagedProcess(executable: "/usr/bin/env", arguments: ["python3", script, String(upstreamPort)],
                                          logFile: directory + "/upstream.log")
        try await withCleanup(upstream, { _ = await $0.terminate() }) { upstream in
            #expect(try await Poll.until(timeout: .seconds(20)) { upstream.output.contains("ready") }, "upstream: \(upstream.output)")
            let issuer = try TestIssuer()
            let gateway = try await GatewayProcess.start { port, adminPort, directory in
                let issuers = (try? issuer.issuersYAML(directory: directory)) ?? ""
                return """
                listen: 127.0.0.1:\(port)
                admin_listen: 127.0.0.1:\(adminPort)
                event_loops: 1
                \(issuers)
                routes:
                  - {name: admin, path_prefix: /admin, upstream: {targets: [127.0.0.1:\(upstreamPort)]}, auth: {type: jwt}}
                  - {name: short, path_prefix: /short, upstream: {targets: [127.0.0.1:\(upstreamPort)], idle_timeout: 1s}}
                  - {name: public, path_prefix: /, upstream: {targets: [127.0.0.1:\(upstreamPort)]}}
                """
            }
            try await withCleanup(gateway, { await $0.stop() }) { gateway in
                try await body(upstream, upstreamPort, gateway, issuer)
            }
        }
    }

    /// The build before forwarded the GET with its body and pooled the connection: the upstream
    /// read the attacker's smuggled head, completed by the victim's request — token included — and
    /// the victim got the answer to `/public/smuggled` (a "CL.0" desync; an attacker review).
    @Test("a body that the upstream leaves unread — on a GET, a DELETE, a PROPFIND, a PURGE — does not become the start of another client's request to a JWT route: the upstream is told Connection: close and the connection is not pooled")
    func bodyOnGetDoesNotPoisonThePool() async throws {
        try await Self.withUpstreamAndGateway { upstream, _, gateway, issuer in
            let attacker = try gateway.client()
            defer { attacker.close() }
            let smuggled = "GET /public/smuggled HTTP/1.1\r\nX-Swallow: "
            try attacker.send("GET /public/attacker HTTP/1.1\r\nHost: gw.test\r\nContent-Length: \(smuggled.utf8.count)\r\n\r\n\(smuggled)")
            let first = try attacker.readResponse()
            #expect(first.status == 200)
            #expect(first.json["connection"] as? String == "close", "the upstream was not told the connection ends: \(first.text)")

            let token = try issuer.token(sub: "victim")
            for attempt in 0..<3 {
                let victim = try gateway.request("GET", "/admin/orders/\(attempt)", headers: [("Authorization", "Bearer \(token)")])
                #expect(victim.status == 200)
                #expect(victim.json["path"] as? String == "/admin/orders/\(attempt)", "the victim got another request's answer: \(victim.text)")
                #expect(victim.json["swallowed"] as? String == nil, "the victim's request was swallowed: \(victim.text)")
            }
            #expect(!upstream.output.contains("/public/smuggled"), "the smuggled request ran: \(upstream.output)")
            // A DELETE's body likewise, and one on methods beyond RFC 9110's (WebDAV's PROPFIND, a
            // cache's PURGE: a first version of the fix let those through); a plain GET after each
            // is answered as itself.
            for method in ["DELETE", "PROPFIND", "PURGE"] {
                let answered = try gateway.request(method, "/public/d", body: Array("GET /public/smuggled HTTP/1.1\r\nX-Swallow: ".utf8))
                #expect(answered.json["connection"] as? String == "close", "\(method): \(answered.text)")
                #expect(try gateway.request("GET", "/public/after").json["path"] as? String == "/public/after", "after \(method)")
            }
            #expect(!upstream.output.contains("/public/smuggled"), "the smuggled request ran: \(upstream.output)")
        }
    }

    /// A HEAD's answer frames a body that does not follow, so its connection is never pooled. The
    /// build before closed each itself: one TIME_WAIT socket of the gateway's toward the target
    /// per HEAD — about 28 000 ports, used up in half a minute by a client sending HEADs.
    @Test("HEAD requests leave no TIME_WAIT socket at the gateway toward the upstream; GETs keep sharing one pooled connection")
    func headLeavesNoTimeWait() async throws {
        try await Self.withUpstreamAndGateway { upstream, upstreamPort, gateway, _ in
            let client = try gateway.client()
            defer { client.close() }
            for index in 0..<30 {
                let response = try client.request("HEAD", "/public/h\(index)")
                #expect(response.status == 200)
            }
            try await Task.sleep(for: .milliseconds(300))
            let waiting = try runCommand("/usr/bin/env", ["ss", "-Htan", "state", "time-wait", "dport", "=", ":\(upstreamPort)"])
            let sockets = waiting.stdout.split(separator: "\n").count
            #expect(sockets == 0, "\(sockets) of the gateway's sockets toward the upstream in TIME_WAIT:\n\(waiting.stdout)")

            for index in 0..<5 {
                let response = try client.request("GET", "/public/g\(index)")
                #expect(response.status == 200)
                #expect(response.json["connection"] as? String == nil, "a plain GET was sent Connection: \(response.text)")
            }
            let ports = Set(upstream.output.split(separator: "\n").filter { $0.contains("request GET /public/g") }.compactMap { $0.split(separator: "port=").last })
            #expect(ports.count == 1, "plain GETs used \(ports.count) upstream connections")
        }
    }

    /// A pooled connection kept the `idle_timeout` of the route that opened it: on the build
    /// before, a request of the public route (60 s) on a connection a 1 s route had opened got a
    /// 504 after 1 s (an attacker review).
    @Test("a pooled upstream connection takes the idle_timeout of the route whose request it carries, not of the route that opened it")
    func pooledConnectionTakesTheRoutesIdleTimeout() async throws {
        try await Self.withUpstreamAndGateway { upstream, _, gateway, _ in
            let client = try HTTPTestClient(port: gateway.port, timeout: 15)
            defer { client.close() }
            #expect(try client.request("GET", "/short/x").status == 200)
            let slow = try client.request("GET", "/public/slow")
            #expect(slow.status == 200, "\(slow.status) \(slow.text)")
            // The short route's own timeout still holds for its requests.
            let short = try client.request("GET", "/short/slow")
            #expect(short.status == 504, "\(short.status) \(short.text)")
            let ports = Set(upstream.output.split(separator: "\n").filter { $0.contains("request GET /short/x") || $0.contains("request GET /public/slow") }
                .compactMap { $0.split(separator: "port=").last })
            #expect(ports.count == 1, "the public request did not reuse the short route's connection: \(upstream.output)")
        }
    }
}
