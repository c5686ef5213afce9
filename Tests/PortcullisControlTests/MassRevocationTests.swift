import Foundation
import PortcullisTestSupport
import Testing

@Suite("mass revocation", .serialized)
struct MassRevocationTests {
    @Test("a batch of 10 000 jti revocations is one atomic write, and one wait sees it applied on every gateway")
    func batchOfTenThousand() async throws {
        let cluster = try await ControlCluster()
        try await withCleanup(cluster, { await $0.shutdown() }) { cluster in
            try await cluster.startGateway(id: "gw-a")
            try await cluster.startGateway(id: "gw-b")
            try await eventually("both gateways live") {
                (try cluster.control.admin("GET", "/v1/nodes").json["nodes"] as? [Any])?.count == 2
            }
            // A real token whose jti sits in the middle of the batch.
            let token = try cluster.clientCredentials().access
            let jti = try #require(claims(of: token)["jti"] as? String)
            #expect(try cluster.statuses(token) == [200, 200])
            let exp = Int64(Date().timeIntervalSince1970) + 600
            var items = (0..<9_999).map { #"{"kind":"jti","value":"mass-\#($0)","exp":\#(exp)}"# }
            items.insert(#"{"kind":"jti","value":"\#(jti)","exp":\#(exp)}"#, at: 5_000)
            let response = try cluster.control.admin("POST", "/v1/revocations/batch?wait=10s",
                                                     json: #"{"revocations":[\#(items.joined(separator: ","))]}"#)
            #expect(response.status == 201, "\(response.text.prefix(300))")
            #expect(response.json["count"] as? Int == 10_000)
            let changes = response.json["changes"] as? [[String: Any]] ?? []
            #expect(changes.count == 10)
            let first = response.json["first_sequence"] as? Int ?? 0
            #expect(response.json["last_sequence"] as? Int == first + 9)
            #expect((response.json["propagation"] as? [String: Any])?["complete"] as? Bool == true)

            // The wait returned complete: every gateway refuses the token now, without polling.
            #expect(try cluster.statuses(token) == [401, 401])
            let listed = try cluster.control.admin("GET", "/v1/revocations?kind=jti&value=mass-9998")
            #expect((listed.json["items"] as? [Any])?.count == 1)

            // One bad element rejects the whole batch, naming it; nothing is written.
            let bad = try cluster.control.admin("POST", "/v1/revocations/batch",
                                                json: #"{"revocations":[{"kind":"jti","value":"ok-1"},{"kind":"jti","value":"late","exp":1}]}"#)
            #expect(bad.status == 400)
            #expect(bad.json["field"] as? String == "revocations[1].exp")
            #expect(((try cluster.control.admin("GET", "/v1/revocations?kind=jti&value=ok-1")).json["items"] as? [Any])?.isEmpty == true)

            // Each token keeps its own reason: tokens of one reason share a change, another reason
            // gets its own (a change holds one reason).
            let reasons = try cluster.control.admin("POST", "/v1/revocations/batch", json: #"{"revocations":[{"kind":"jti","value":"r-1","reason":"incident 7"},"#
                                                   + #"{"kind":"jti","value":"r-2","reason":"incident 8"},{"kind":"jti","value":"r-3","reason":"incident 7"},"#
                                                   + #"{"kind":"jti","value":"r-4"}]}"#)
            #expect(reasons.status == 201 && (reasons.json["changes"] as? [Any])?.count == 3, "\(reasons.text.prefix(300))")
            for (jti, reason) in [("r-1", "incident 7"), ("r-2", "incident 8"), ("r-3", "incident 7")] {
                let item = (try cluster.control.admin("GET", "/v1/revocations?kind=jti&value=\(jti)").json["items"] as? [[String: Any]])?.first
                #expect(item?["reason"] as? String == reason, "\(jti): \(String(describing: item))")
            }

            // The CLI sends a file (one revocation per line, or JSON objects) as one batch.
            let file = try TemporaryDirectory.make(prefix: "portcullis-batch") + "/revocations.txt"
            try "# compromised in incident 42\njti cli-1\n{\"kind\":\"subject\",\"value\":\"cli-user\"}\n\njti cli-2\nsession cli-session\n"
                .write(toFile: file, atomically: true, encoding: .utf8)
            let cli = try runCommand(PortcullisBinary.path, ["admin", "revoke-batch", "--file", file, "--wait",
                                                             "--endpoint", "http://127.0.0.1:\(cluster.control.adminPort)",
                                                             "--token", ControlCluster.adminToken])
            #expect(cli.status == 0, "\(cli.stdout) \(cli.stderr)")
            #expect(cli.stdout.contains("revoked 4 in 3 changes"), "\(cli.stdout)")
            #expect(((try cluster.control.admin("GET", "/v1/revocations?kind=session&value=cli-session")).json["items"] as? [Any])?.count == 1)
            let broken = try runCommand(PortcullisBinary.path, ["admin", "revoke-batch", "--file", "-",
                                                                "--endpoint", "http://127.0.0.1:\(cluster.control.adminPort)",
                                                                "--token", ControlCluster.adminToken], stdin: "jti ok\nnonsense\n")
            #expect(broken.status != 0)
            #expect(broken.stderr.contains("standard input:2"))
        }
    }
}
