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

        @Test("Chromium: after too many wrong passwords the login page says so with 429, and the right password is refused until the window has passed")
        func browserLoginThrottled() async throws {
            // A window long enough that two KDF runs in a debug build on a busy machine do not outlast it.
            let result = try await Self.account("throttle", ["2"], throttle: "{per_user: 2, per_address: 20, window: 20s}")
            let bad = result["bad"] as? [[String: Any]] ?? []
            #expect(bad.map { $0["status"] as? Int } == [403, 403])
            #expect(bad.allSatisfy { $0["error"] as? String == "Wrong username or password." })
            for name in ["locked", "still_locked"] {
                let page = result[name] as? [String: Any] ?? [:]
                #expect(page["status"] as? Int == 429, "\(name): \(page)")
                #expect(page["error"] as? String == "Too many failed sign-ins. Try again in 1 minute.", "\(name): \(page)")
            }
            // The window (20 s) runs from the first failure, which was recorded after its KDF run.
            #expect(result["refused_while_waiting"] as? Int ?? 0 > 0)
            #expect(result["unlocked_after"] as? Double ?? 0 >= 20, "\(result)")
            let after = result["after_window"] as? [String: Any] ?? [:]
            #expect(after["status"] as? Int == 200 && after["title"] as? String == "Allow access?", "\(after)")
        }

        @Test("Chromium: signing out on the account page ends the session: the cookie is gone, a copy of it opens no account page and signs in no one")
        func browserSignOut() async throws {
            let result = try await Self.account("sign-out", [])
            let account = result["account"] as? [String: Any] ?? [:]
            #expect(account["status"] as? Int == 200 && account["title"] as? String == "Your account" && account["user"] as? String == "alice")
            let signedOut = result["signed_out"] as? [String: Any] ?? [:]
            #expect(signedOut["message"] as? String == "You are signed out.", "\(signedOut)")
            #expect(signedOut["cookie_left"] as? Bool == false)
            let accountAfter = result["account_after"] as? [String: Any] ?? [:]
            #expect(accountAfter["status"] as? Int == 403 && accountAfter["title"] as? String == "Not signed in", "\(accountAfter)")
            let authorizeAfter = result["authorize_after"] as? [String: Any] ?? [:]
            #expect(authorizeAfter["status"] as? Int == 200 && authorizeAfter["title"] as? String == "Sign in", "\(authorizeAfter)")
        }

        @Test("Chromium: access revoked on the account page makes the application's access token fail at a real gateway")
        func browserConsentRevoked() async throws {
            let result = try await Self.account("revoke-consent", [], gateway: true)
            #expect(result["token_status"] as? Int == 200)
            #expect(result["before"] as? Int == 200)
            #expect((result["consents"] as? [String])?.first?.hasPrefix("browser-app (orders:read)") == true, "\(result)")
            #expect(result["notice"] as? String == "Access for browser-app revoked: its tokens are refused from now on.")
            #expect(result["after"] as? Int == 401, "\(result)")
            #expect((result["challenge"] as? String)?.contains("invalid_token") == true, "\(result)")
        }

        /// Runs Scripts/browser_account.py in `mode` as alice against a cluster with the public
        /// client `browser-app` (and a gateway, when asked; its URL is the script's last argument).
        static func account(_ mode: String, _ arguments: [String], throttle: String = "{per_user: 5, per_address: 20, window: 1m}",
                            gateway: Bool = false) async throws -> [String: Any] {
            let appPort = try FreePort.allocate()
            let client = "{client_id: browser-app, public: true, redirect_uris: [\"http://127.0.0.1:\(appPort)/callback\"], scopes: [orders:read], grant_types: [authorization_code]}"
            let cluster = try await SignInBrowser.cluster(throttle: throttle, extraClients: [client])
            defer { Task { await cluster.shutdown() } }
            var arguments = arguments
            if gateway {
                let node = try await cluster.startGateway(id: "gw-1")
                arguments.append("http://127.0.0.1:\(node.port)")
            }
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/browser_account.py").path
            let home = try TemporaryDirectory.make(prefix: "portcullis-chromium")
            defer { try? FileManager.default.removeItem(atPath: home) }
            let run = try runCommand("/usr/bin/python3", [script, mode, cluster.issuer, "browser-app", String(appPort), "alice", "alice-password-1"] + arguments,
                                     environment: ["HOME": home, "PATH": "/usr/bin:/bin"])
            #expect(run.status == 0, "\(run.stderr.suffix(3000))")
            return try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.stdout)\n\(run.stderr.suffix(3000))")
        }
    }
}
