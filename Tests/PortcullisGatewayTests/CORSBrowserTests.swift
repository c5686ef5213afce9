import Foundation
import PortcullisTestSupport
import Testing

/// Headless Chromium (Debian's `chromium` and `chromium-driver`, driven by `python3-selenium`)
/// calls the gateway from pages on two other origins, one allowed by the route's `cors` block:
/// the browser itself enforces the answers, so this checks the CORS fields as browsers read them,
/// preflights included. Skipped where Chromium is not installed.
@Suite("gateway: CORS as a real browser enforces it", .serialized,
       .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver")
                && FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium")))
final class CORSBrowserTests {
    let upstream: TestUpstream
    let issuer: TestIssuer
    let gateway: GatewayProcess
    let allowed: String
    let other: String

    init() async throws {
        upstream = try await TestUpstream.start()
        let issuer = try TestIssuer()
        self.issuer = issuer
        let allowed = "http://127.0.0.1:\(try FreePort.allocate())"
        self.allowed = allowed
        other = "http://127.0.0.1:\(try FreePort.allocate())"
        let upstreamAddress = upstream.address
        gateway = try await GatewayProcess.start { port, adminPort, directory in
            let issuers = (try? issuer.issuersYAML(directory: directory)) ?? ""
            return """
            listen: 127.0.0.1:\(port)
            admin_listen: 127.0.0.1:\(adminPort)
            event_loops: 1
            \(issuers)
            routes:
              - name: api
                path_prefix: /api
                methods: [GET, POST]
                upstream: {targets: [\(upstreamAddress)]}
                auth: {type: jwt}
                cors:
                  allowed_origins: [\(allowed)]
                  allowed_methods: [GET, POST]
                  allowed_headers: [Authorization, Content-Type]
                  exposed_headers: [X-Request-Id]
                  allow_credentials: true
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

    @Test("a page on the allowed origin reads the answers, a 401 included; a page on another origin reads none")
    func browserFetch() throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Browser/cors_fetch.py").path
        let home = try TemporaryDirectory.make(prefix: "portcullis-chromium")
        defer { try? FileManager.default.removeItem(atPath: home) }
        let run = try runCommand("/usr/bin/python3", [script, "http://127.0.0.1:\(gateway.port)", try issuer.token(), allowed, other],
                                 environment: ["HOME": home, "PATH": "/usr/bin:/bin"])
        #expect(run.status == 0, "\(run.stderr.suffix(3000))")
        let results = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: [[String: Any]]], "\(run.stdout)")
        let fromAllowed = try #require(results[allowed])
        #expect(fromAllowed.map { $0["status"] as? Int } == [200, 401, 200], "\(fromAllowed)")
        // The exposed header is readable; without `exposed_headers` the browser would hide it.
        #expect((fromAllowed[0]["requestId"] as? String)?.isEmpty == false, "\(fromAllowed)")
        let fromOther = try #require(results[other])
        #expect(fromOther.count == 3 && fromOther.allSatisfy { ($0["error"] as? String)?.contains("Failed to fetch") == true }, "\(fromOther)")
    }
}
