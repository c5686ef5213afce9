import Foundation
import PortcullisTestSupport
import Testing

extension ControlPlaneTests {
    /// Headless Chromium (Debian's `chromium` and `chromium-driver`, driven by `python3-selenium`)
    /// signs in through the login and consent pages as a person would. Skipped where Chromium is
    /// not installed.
    @Suite("authorization code grant in a real browser",
           .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver")
                    && FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium")))
    struct AuthorizationCodeBrowserTests {
        @Test("Chromium: a wrong password is told so, sign-in and consent lead back to the client with code, state and iss; the cookie is Secure, HttpOnly, SameSite=Lax; a form without the CSRF token is refused")
        func browserSignIn() async throws {
            let appPort = try FreePort.allocate()
            let client = "{client_id: browser-app, public: true, redirect_uris: [\"http://127.0.0.1:\(appPort)/callback\"], scopes: [orders:read], grant_types: [authorization_code]}"
            let cluster = try await SignInBrowser.cluster(extraClients: [client])
            defer { Task { await cluster.shutdown() } }
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/browser_sign_in.py").path
            let home = try TemporaryDirectory.make(prefix: "portcullis-chromium")
            defer { try? FileManager.default.removeItem(atPath: home) }
            let run = try runCommand("/usr/bin/python3", [script, cluster.issuer, "browser-app", String(appPort), "alice", "alice-password-1", home],
                                     environment: ["HOME": home, "PATH": "/usr/bin:/bin"])
            #expect(run.status == 0, "\(run.stderr.suffix(3000))")
            let result = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.stdout)")
            #expect(result["login_title"] as? String == "Sign in")
            #expect(result["labels"] as? [String] == ["Username", "Password"])
            #expect(result["bad_password_error"] as? String == "Wrong username or password.")
            #expect(result["consent_title"] as? String == "Allow access?")
            #expect(result["consent_client"] as? String == "browser-app")
            let cookies = result["cookies"] as? [[String: Any]] ?? []
            #expect(cookies.count == 1)
            #expect(cookies.first?["name"] as? String == "portcullis_session")
            #expect(cookies.first?["secure"] as? Bool == true && cookies.first?["httpOnly"] as? Bool == true)
            #expect(cookies.first?["sameSite"] as? String == "Lax")
            let callback = result["callback"] as? [String: Any] ?? [:]
            #expect(callback["state_matches"] as? Bool == true && callback["has_code"] as? Bool == true)
            #expect(callback["iss"] as? String == cluster.issuer)
            #expect(result["token_status"] as? Int == 200)
            #expect(result["sub"] as? String == "alice")
            #expect(result["forged_title"] as? String == "Form expired")
            #expect(result["callbacks"] as? Int == 1)
        }
    }
}
