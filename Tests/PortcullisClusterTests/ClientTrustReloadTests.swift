import Foundation
import PortcullisTestSupport
import Testing

/// A gateway whose TLS listener verifies client certificates against `tls.client_ca`, and a
/// client holding a certificate of that CA (Scripts/client_trust_peer.py) with connections of
/// every kind open when the operator changes the CA file and reloads: a certificate of a CA cut
/// off must stop counting on all of them at once, and a CA rollover must cut nothing.
@Suite("gateway: a reload that replaces tls.client_ca reaches open connections", .serialized)
struct ClientTrustReloadTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/client_trust_peer.py").path

    /// What the script printed, by line, and the gateway's metrics and log after it ran; nil when
    /// Python's `websockets` or `h2` is missing.
    struct Outcome {
        let lines: [String: String]
        let metrics: String
        let log: String
        let seen: String

        func closedForTrust(_ name: String) -> Double {
            PrometheusText.sample(metrics, "portcullis_sessions_closed_total{protocol=\"\(name)\",reason=\"client_trust_replaced\"}") ?? 0
        }
    }

    /// Runs the script against a gateway whose listener takes `client_certificates` (`optional`
    /// or `required`), with `mode` `replace` (the client CA replaced by another) or `rollover`
    /// (the other CA added after it). `after` runs before the gateway stops, with the new CA.
    func run(clientCertificates: String, mode: String,
             after: (GatewayProcess, TestCertificateAuthority, TestCertificateAuthority, TestCertificateAuthority.Leaf) throws -> Void = { _, _, _, _ in }) async throws -> Outcome? {
        let upstream = try await TestUpstream.start()
        let peers = try await WebSocketPeers.start()
        let server = try TestCertificateAuthority.make(name: "Gateway CA")
        let clients = try TestCertificateAuthority.make(name: "Client CA")
        let replacement = try TestCertificateAuthority.make(name: "Replacement Client CA")
        let leaf = try server.issue("gateway")
        let holder = try clients.issue("partner-1")
        guard let echo = peers.echoAddress else {
            await upstream.stop()
            await peers.stop()
            return nil
        }
        let upstreamAddress = upstream.address
        let gateway = try await GatewayProcess.start { port, adminPort, directory in
            let clientCA = directory + "/client-ca.pem"
            try? FileManager.default.copyItem(atPath: clients.certificate, toPath: clientCA)
            return """
            listen: 127.0.0.1:\(port)
            admin_listen: 127.0.0.1:\(adminPort)
            event_loops: 1
            tls:
              certificate_chain: \(leaf.certificate)
              private_key: \(leaf.privateKey)
              client_ca: \(clientCA)
              client_certificates: \(clientCertificates)
            routes:
              - name: partners
                path_prefix: /partners
                require_client_certificate: true
                strip_prefix: true
                upstream: {targets: [\(upstreamAddress)]}
              - name: open
                path_prefix: /open
                strip_prefix: true
                upstream: {targets: [\(upstreamAddress)]}
              - name: ws
                path_prefix: /bound-ws
                require_client_certificate: true
                upstream: {targets: [\(echo)]}
                websocket: true
              - name: ws-open
                path_prefix: /open-ws
                upstream: {targets: [\(echo)]}
                websocket: true
            """
        }
        var outcome: Outcome?
        try await withCleanup((gateway, upstream, peers), { resources in
            await resources.0.stop()
            await resources.1.stop()
            await resources.2.stop()
        }) { _ in
            let run = try runCommand("/usr/bin/env", ["python3", Self.script, String(gateway.port), server.certificate, holder.certificate,
                                                      holder.privateKey, gateway.directory + "/client-ca.pem", replacement.certificate,
                                                      String(gateway.process.pid), mode])
            if run.status == 77 {
                Issue.record("Python websockets or h2 is missing (cluster/setup.sh installs them)")
                return
            }
            let lines = Dictionary(run.stdout.split(separator: "\n").map { line -> (String, String) in
                let parts = line.split(separator: " ", maxSplits: 1)
                return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
            }, uniquingKeysWith: { first, _ in first })
            let seen = "\(run.stdout)\(run.stderr)\n\(gateway.process.output)"
            #expect(lines["kept-before"] == "200" && lines["drip-before"] == "HTTP/1.1 200 OK" && lines["ws-before"] == "ok", "\(seen)")
            let h2Before = lines["h2-before"]?.split(separator: ",").map(String.init) ?? []
            #expect(Set(["status:1:200", "data:1", "status:3:200", "data:3"]).isSubset(of: Set(h2Before)), "\(seen)")
            try after(gateway, server, replacement, holder)
            outcome = Outcome(lines: lines, metrics: try gateway.metrics(), log: gateway.process.output, seen: seen)
        }
        return outcome
    }

    /// `curl` to a route requiring a certificate, with `leaf`: the status, 0 when refused in the handshake.
    static func curl(_ gateway: GatewayProcess, _ server: TestCertificateAuthority, _ leaf: TestCertificateAuthority.Leaf) throws -> Int {
        let result = try runCommand("/usr/bin/curl", ["-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", server.certificate,
                                                      "--cert", leaf.certificate, "--key", leaf.privateKey, "https://localhost:\(gateway.port)/partners/x"])
        return Int(result.stdout) ?? 0
    }

    /// The build before kept every connection verified under the replaced CA admitted until its
    /// client closed it: a kept-alive connection went on being answered 200 on a route requiring
    /// a certificate, 500 pipelined requests were all answered, never-ending responses over
    /// HTTP/1.1 and HTTP/2 went on, and a WebSocket admitted on the certificate stayed open.
    @Test("a reload that replaces tls.client_ca closes what the old CA's certificate admitted: a kept-alive connection, requests pipelined across the reload (403 from the reload on), a never-ending response over HTTP/1.1 and over HTTP/2 (GOAWAY), a WebSocket on a route requiring the certificate (1008); what it did not admit goes on — a WebSocket and an HTTP/2 stream on routes that do not require it, even beside a request refused for crossing the GOAWAY — and a new connection with the old certificate is refused")
    func replacedClientCAReachesOpenConnections() async throws {
        guard let outcome = try await run(clientCertificates: "optional", mode: "replace", after: { gateway, server, replacement, holder throws in
            // A new connection presents the old CA's certificate in vain; the new CA's passes.
            #expect(try Self.curl(gateway, server, holder) == 0)
            #expect(try Self.curl(gateway, server, try replacement.issue("partner-2")) == 200)
        }) else { return }
        let lines = outcome.lines, seen = outcome.seen
        // Answered 200 until the reload, 403 for any admitted after it, then closed.
        let pipelined = lines["pipelined"]?.split(separator: " ") ?? []
        #expect(pipelined.count == 3 && (Int(pipelined[0]) ?? 500) < 500 && pipelined[2] == "True", "requests pipelined across the reload: \(seen)")
        #expect(lines["drip-after"] == "cut", "the HTTP/1.1 response went on: \(seen)")
        // Stream 1 (certificate) reset, the connection told to go away, stream 5 (sent across
        // the GOAWAY) refused alone; stream 3 (no certificate needed) goes on.
        let h2After = Set(lines["h2-after"]?.split(separator: ",").map(String.init) ?? [])
        #expect(h2After.isSuperset(of: ["goaway", "reset:1", "reset:5"]) && !h2After.contains("eof"), "\(seen)")
        #expect(lines["h2-later"]?.contains("data:3") == true, "the stream of a route that needs no certificate was cut: \(seen)")
        #expect(lines["ws-bound"] == "closed:1008:client certificate no longer trusted", "\(seen)")
        #expect(lines["ws-open"] == "echo", "a WebSocket the certificate did not admit was closed: \(seen)")
        #expect(lines["kept-after"]?.hasPrefix("closed:") == true, "the kept-alive connection was still answered: \(seen)")
        #expect(outcome.log.contains("connections_closed_for_client_trust="), "\(outcome.log)")
        // The WebSocket, the never-ending responses, and over HTTP/1.1 perhaps the pipelined
        // request in flight at the reload.
        for name in ["websocket", "http1", "h2"] {
            #expect(outcome.closedForTrust(name) >= 1, "\(name): \(outcome.metrics.split(separator: "\n").filter { $0.contains("sessions_closed") })")
        }
    }

    /// On a listener that requires a certificate, every connection was admitted on the strength
    /// of one: a bypass review kept a WebSocket on a route without `require_client_certificate`
    /// open 40 s after the CA that verified its certificate was replaced.
    @Test("with client_certificates: required, a reload that replaces tls.client_ca also ends what was admitted on routes that do not require a certificate themselves: the WebSocket closes with 1008 and the HTTP/2 stream is reset")
    func requiredListenerEndsEverySession() async throws {
        guard let outcome = try await run(clientCertificates: "required", mode: "replace") else { return }
        let lines = outcome.lines, seen = outcome.seen
        #expect(lines["ws-open"] == "closed:1008:client certificate no longer trusted", "\(seen)")
        let h2After = Set(lines["h2-after"]?.split(separator: ",").map(String.init) ?? [])
        #expect(h2After.isSuperset(of: ["goaway", "reset:1", "reset:3"]), "\(seen)")
        #expect(outcome.closedForTrust("websocket") == 2, "\(seen)")
    }

    /// A bypass review: the first build of this compared the whole CA list, so a rollover bundle
    /// keeping the old CA beside the new one closed every WebSocket with "client certificate no
    /// longer trusted", which was false.
    @Test("a CA rollover — tls.client_ca replaced by a bundle that keeps the old CA beside a new one — cuts nothing: the kept-alive connection, the pipelined requests, the responses, both WebSockets and the HTTP/2 connection go on")
    func rolloverCutsNothing() async throws {
        guard let outcome = try await run(clientCertificates: "optional", mode: "rollover", after: { gateway, server, replacement, holder throws in
            #expect(try Self.curl(gateway, server, holder) == 200)
            #expect(try Self.curl(gateway, server, try replacement.issue("partner-2")) == 200)
        }) else { return }
        let lines = outcome.lines, seen = outcome.seen
        #expect(lines["pipelined"] == "500 0 True", "\(seen)")
        #expect(lines["drip-after"] == "running", "\(seen)")
        let h2After = Set(lines["h2-after"]?.split(separator: ",").map(String.init) ?? [])
        #expect(h2After.isSuperset(of: ["data:1", "data:3", "status:5:200"]) && !h2After.contains("goaway"), "\(seen)")
        #expect(lines["ws-bound"] == "echo" && lines["ws-open"] == "echo" && lines["kept-after"] == "200", "\(seen)")
        #expect(outcome.log.contains("connections_closed_for_client_trust=0"), "\(outcome.log)")
    }
}
