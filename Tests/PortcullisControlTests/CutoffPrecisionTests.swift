import Foundation
import PortcullisTestSupport
import Testing

extension ControlPlaneTests {
    /// Subject and client cut-offs are millisecond instants: a token issued before the cut-off
    /// never survives it, even one issued earlier in the same second.
    @Suite("cut-off precision")
    struct CutoffPrecisionTests {
        @Test("a subject or client cut-off made with the default before (now) refuses a token issued earlier in the same second")
        func sameSecondTokensAreRefused() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            try await cluster.startGateway(id: "gw-1")
            let control = cluster.control

            for kind in ["subject", "client"] {
                // A token, then at once a cut-off for its subject (client) — in the same second.
                // Start just after a second boundary so that both fit in it; try again if not.
                var refusedInSameSecond = false
                for _ in 0..<5 {
                    while Date().timeIntervalSince1970.truncatingRemainder(dividingBy: 1) > 0.2 {
                        try await Task.sleep(for: .milliseconds(10))
                    }
                    let token = try cluster.clientCredentials()
                    let iat = try #require(claims(of: token.access)["iat"] as? Int)
                    #expect(try cluster.statuses(token.access) == [200])
                    let created = try control.admin("POST", "/v1/revocations?wait=10s", json: #"{"kind":"\#(kind)","value":"demo-client"}"#)
                    #expect(created.status == 201, "\(created.text)")
                    let createdAt = try #require(created.json["created_at_ms"] as? Int)
                    let id = try #require(created.json["id"] as? String)
                    defer {
                        _ = try? control.admin("DELETE", "/v1/revocations/\(id)")
                    }
                    guard createdAt / 1000 == iat else { continue }  // crossed a second boundary: not the case under test
                    // Issued before the cut-off, so refused — although its iat equals the cut-off's second.
                    #expect(try cluster.statuses(token.access) == [401], "\(kind) cut-off in the token's own second")
                    refusedInSameSecond = true
                    break
                }
                #expect(refusedInSameSecond, "\(kind): never managed to issue a token and cut it off within one second")
                // Once lifted, a fresh token passes again.
                try await eventually("\(kind) cut-off lifted") { try cluster.statuses(cluster.clientCredentials().access) == [200] }
            }
        }

        @Test("cut-offs are millisecond instants in the admin API and the CLI; a token from a later second passes")
        func millisecondCutoffs() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            try await cluster.startGateway(id: "gw-1")
            let control = cluster.control

            // RFC 3339 with a fraction, and Unix seconds with a fraction, keep their milliseconds.
            let rfc = try control.admin("POST", "/v1/revocations", json: #"{"kind":"subject","value":"alice","before":"2030-01-01T00:00:00.250Z"}"#)
            #expect(rfc.status == 201, "\(rfc.text)")
            #expect(rfc.json["before_ms"] as? Int == 1_893_456_000_250)
            let unix = try control.admin("POST", "/v1/revocations", json: #"{"kind":"client","value":"app-x","before":1893456000.75}"#)
            #expect(unix.status == 201, "\(unix.text)")
            #expect(unix.json["before_ms"] as? Int == 1_893_456_000_750)
            let listed = try control.admin("GET", "/v1/revocations/\(try #require(rfc.json["id"] as? String))")
            #expect(listed.json["before_ms"] as? Int == 1_893_456_000_250)

            // The default is now, to the millisecond.
            let startMillis = Int(Date().timeIntervalSince1970 * 1000)
            let now = try control.admin("POST", "/v1/revocations?wait=10s", json: #"{"kind":"subject","value":"demo-client"}"#)
            let endMillis = Int(Date().timeIntervalSince1970 * 1000)
            let before = try #require(now.json["before_ms"] as? Int)
            #expect(before >= startMillis && before <= endMillis)
            // A token issued in a later second than the cut-off passes.
            while Int(Date().timeIntervalSince1970) <= before / 1000 { try await Task.sleep(for: .milliseconds(20)) }
            #expect(try cluster.statuses(cluster.clientCredentials().access) == [200])

            // The CLI sends and shows milliseconds too.
            let cli = try runCommand(PortcullisBinary.path, ["admin", "revoke", "--sub", "bob", "--before", "2030-01-01T00:00:00.125Z", "--json",
                                                           "--endpoint", control.adminURL, "--token", ControlCluster.adminToken])
            #expect(cli.status == 0, "\(cli.stderr)")
            let printed = try #require(try JSONSerialization.jsonObject(with: Data(cli.stdout.utf8)) as? [String: Any], "\(cli.stdout)")
            #expect(printed["before_ms"] as? Int == 1_893_456_000_125)
            let cliUnix = try runCommand(PortcullisBinary.path, ["admin", "revoke", "--client", "app-y", "--before", "1893456000.5", "--json",
                                                               "--endpoint", control.adminURL, "--token", ControlCluster.adminToken])
            #expect(cliUnix.status == 0, "\(cliUnix.stderr)")
            let printedUnix = try #require(try JSONSerialization.jsonObject(with: Data(cliUnix.stdout.utf8)) as? [String: Any], "\(cliUnix.stdout)")
            #expect(printedUnix["before_ms"] as? Int == 1_893_456_000_500)
        }
    }
}
