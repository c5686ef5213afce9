import Foundation
import PortcullisTestSupport
import Testing

extension ControlPlaneTests {
    /// Headless Chromium (Debian's `chromium` and `chromium-driver`, driven by `python3-selenium`)
    /// uses the operator console as an operator would. Skipped where Chromium is not installed.
    @Suite("operator console in a real browser",
           .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver")
                    && FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium")))
    struct OperatorConsoleBrowserTests {
        @Test("Chromium: sign-in is required and a wrong token is told so; the cluster page lists both gateways; revoking a subject shows each node's acknowledgement as the script polls; the audit page names the operator; a link from another site does not sign the operator out; sign-out ends the session; no CSP violation")
        func browserRevoke() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            try await cluster.startGateway(id: "gw-1")
            try await cluster.startGateway(id: "gw-2")
            let token = try cluster.clientCredentials().access
            #expect(try cluster.statuses(token) == [200, 200])
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/browser_console.py").path
            let home = try TemporaryDirectory.make(prefix: "portcullis-chromium")
            defer { try? FileManager.default.removeItem(atPath: home) }
            let run = try runCommand("/usr/bin/python3", [script, cluster.control.adminURL, ControlCluster.adminToken, "demo-client", home],
                                     environment: ["HOME": home, "PATH": "/usr/bin:/bin"])
            #expect(run.status == 0, "\(run.stderr.suffix(3000))")
            let result = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.stdout)")
            #expect(result["redirected_to"] as? String == "/console/sign-in")
            #expect(result["labels"] as? [String] == ["Admin token"])
            #expect(result["wrong_token_error"] as? String == "That is not a valid admin token.")
            #expect(result["nodes"] as? [String: String] == ["gw-1": "live", "gw-2": "live"])
            let cookies = result["cookies"] as? [[String: Any]] ?? []
            #expect(cookies.count == 1 && cookies.first?["name"] as? String == "portcullis_console")
            #expect(cookies.first?["secure"] as? Bool == true && cookies.first?["httpOnly"] as? Bool == true)
            #expect(cookies.first?["sameSite"] as? String == "Strict" && cookies.first?["path"] as? String == "/console")
            #expect(result["revoke_labels"] as? [String] == ["Kind", "Value", "Issuer (optional; every issuer when empty)", "Reason"])
            #expect(result["propagation_state"] as? String == "complete")
            #expect((result["polls"] as? Int ?? 0) >= 1)
            #expect(result["summary"] as? String == "2 of 2 live gateways applied it.")
            let acks = result["acks"] as? [String: [String: String]] ?? [:]
            #expect(Set(acks.keys) == ["gw-1", "gw-2"])
            for (node, ack) in acks {
                #expect(ack["applied"] == "applied", "\(node)")
                #expect(ack["latency"]?.hasSuffix(" ms") == true, "\(node): \(ack)")
            }
            let audit = result["audit"] as? [[String: String]] ?? []
            #expect(audit.first == ["actor": "test-ops", "action": "revocation.create", "target": "subject:demo-client"])
            #expect(audit.contains { $0["action"] == "console.sign_in" && $0["actor"] == "test-ops" })
            #expect(result["cross_site_link"] as? String == "/console/sign-in")
            #expect(result["after_cross_site_link"] as? String == "signed in", "a link from another site signed the operator out")
            #expect(result["signed_out_notice"] as? String == "You are signed out.")
            #expect(result["after_sign_out"] as? String == "/console/sign-in")
            #expect((result["csp_violations"] as? [String])?.isEmpty == true, "\(result["csp_violations"] ?? "")")
            // The revocation made in the browser reached both gateways.
            #expect(try cluster.statuses(token) == [401, 401])
        }
    }
}
