import Foundation
import PortcullisTestSupport
import Testing

/// A gateway whose TLS listener verifies client certificates against `tls.client_ca`, and a
/// client holding a certificate of that CA (Scripts/client_trust_peer.py) with connections of
/// every kind open when the operator replaces the CA and reloads: the certificate must stop
/// counting on all of them at once.
@Suite("gateway: a reload that replaces tls.client_ca reaches open connections", .serialized)
struct ClientTrustReloadTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/client_trust_peer.py").path

    /// The build before kept every connection verified under the replaced CA admitted until its
    /// client closed it: a kept-alive connection went on being answered 200 on a route requiring
    /// a certificate, 500 pipelined requests were all answered, never-ending responses over
    /// HTTP/1.1 and HTTP/2 went on, and a WebSocket admitted on the certificate stayed open.
    @Test("a reload that replaces tls.client_ca closes what the old CA's certificate admitted: a kept-alive connection, requests pipelined across the reload (403 from the reload on), a never-ending response over HTTP/1.1 and over HTTP/2 (GOAWAY), a WebSocket on a route requiring the certificate (1008); a WebSocket on a route that does not require it stays open, and a new connection with the old certificate is refused")
    func replacedClientCAReachesOpenConnections() async throws {
        let upstream = try await TestUpstream.start()
        let peers = try await WebSocketPeers.start()
        let server = try TestCertificateAuthority.make(name: "Gateway CA")
        let clients = try TestCertificateAuthority.make(name: "Client CA")
        let replacement = try TestCertificateAuthority.make(name: "Replacement Client CA")
        let leaf = try server.issue("gateway")
        let holder = try clients.issue("partner-1")
        guard let echo = peers.echoAddress else {
            await upstream.stop()
            return
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
              client_certificates: optional
            routes:
              - name: partners
                path_prefix: /partners
                require_client_certificate: true
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
        try await withCleanup((gateway, upstream, peers), { resources in
            await resources.0.stop()
            await resources.1.stop()
            await resources.2.stop()
        }) { _ in
            let run = try runCommand("/usr/bin/env", ["python3", Self.script, String(gateway.port), server.certificate, holder.certificate,
                                                      holder.privateKey, gateway.directory + "/client-ca.pem", replacement.certificate,
                                                      String(gateway.process.pid)])
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
            #expect(lines["h2-before"]?.contains("status:200") == true && lines["h2-before"]?.contains("data") == true, "\(seen)")
            // Answered 200 until the reload, 403 for any admitted after it, then closed.
            let pipelined = lines["pipelined"]?.split(separator: " ") ?? []
            #expect(pipelined.count == 3 && (Int(pipelined[0]) ?? 500) < 500 && pipelined[2] == "True", "requests pipelined across the reload: \(seen)")
            #expect(lines["drip-after"] == "cut", "the HTTP/1.1 response went on: \(seen)")
            // The stream is reset (or ended) and the connection told to go away.
            let h2After = lines["h2-after"] ?? ""
            #expect(h2After.contains("goaway") && (h2After.contains("reset") || h2After.contains("ended")), "the HTTP/2 stream went on: \(seen)")
            #expect(lines["ws-bound"] == "closed:1008:client certificate no longer trusted", "\(seen)")
            #expect(lines["ws-open"] == "echo", "a WebSocket the certificate did not admit was closed: \(seen)")
            #expect(lines["kept-after"]?.hasPrefix("closed:") == true, "the kept-alive connection was still answered: \(seen)")
            #expect(gateway.process.output.contains("connections_closed_for_client_trust="), "\(gateway.process.output)")
            // A new connection presents the old CA's certificate in vain; the new CA's passes.
            func curl(_ leaf: TestCertificateAuthority.Leaf) throws -> Int {
                let result = try runCommand("/usr/bin/curl", ["-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", server.certificate,
                                                              "--cert", leaf.certificate, "--key", leaf.privateKey,
                                                              "https://localhost:\(gateway.port)/partners/x"])
                return Int(result.stdout) ?? 0
            }
            #expect(try curl(holder) == 0)
            #expect(try curl(try replacement.issue("partner-2")) == 200)
            let metrics = try gateway.metrics()
            // The WebSocket, the never-ending responses, and over HTTP/1.1 perhaps the pipelined
            // request in flight at the reload.
            for name in ["websocket", "http1", "h2"] {
                #expect((PrometheusText.sample(metrics, "portcullis_sessions_closed_total{protocol=\"\(name)\",reason=\"client_trust_replaced\"}") ?? 0) >= 1,
                        "\(name): \(metrics.split(separator: "\n").filter { $0.contains("sessions_closed") })")
            }
        }
    }
}
