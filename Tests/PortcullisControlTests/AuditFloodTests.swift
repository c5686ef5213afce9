import Foundation
import PortcullisTestSupport
import Testing

extension ControlPlaneTests {
    /// Unauthenticated admin calls cannot push real entries out of the capped audit stream.
    @Suite("audit flood")
    struct AuditFloodTests {
        @Test("a flood of unauthenticated calls writes at most a bounded number of audit entries, counts every failure, and authenticated calls are still audited")
        func unauthenticatedFloodIsRateLimited() async throws {
            let cluster = try await ControlCluster(authorizationServer: false)
            defer { Task { await cluster.shutdown() } }
            let control = cluster.control
            let flood = 300
            let started = ContinuousClock.now
            for index in 0..<flood {
                let refused = try control.admin("POST", "/v1/revocations", json: #"{"kind":"subject","value":"x"}"#,
                                                token: index.isMultiple(of: 2) ? "" : "wrong-\(index)")
                #expect(refused.status == 401)
            }
            let elapsedSeconds = Int((ContinuousClock.now - started).components.seconds) + 1
            // An authenticated action right after the flood is recorded all the same.
            #expect(try control.admin("POST", "/v1/revocations", json: #"{"kind":"subject","value":"after-flood"}"#).status == 201)

            let entries = try control.admin("GET", "/v1/audit?count=1000").json["entries"] as? [[String: Any]] ?? []
            let failures = entries.filter { $0["outcome"] as? String == "unauthorized" }
            // The bucket: a burst of 20, then one entry a second.
            #expect(failures.count >= 20)
            #expect(failures.count <= 20 + elapsedSeconds, "\(failures.count) failure entries after \(elapsedSeconds) s")
            #expect(entries.contains { $0["action"] as? String == "revocation.create" && $0["target"] as? String == "subject:after-flood"
                && $0["actor"] as? String == "test-ops" })
            #expect(try cluster.redis.cli("XLEN", "portcullis:audit") == String(failures.count + 1))

            // Every failure is counted, and so is every entry left out.
            let metrics = try control.metrics()
            #expect(metrics.contains(#"portcullis_admin_auth_failures_total{credential="none"} \#(flood / 2)"#), "\(metrics)")
            #expect(metrics.contains(#"portcullis_admin_auth_failures_total{credential="invalid"} \#(flood / 2)"#))
            #expect(metrics.contains("portcullis_admin_audit_suppressed_total \(flood - failures.count)"))
            // The next entry that gets through says how many were left out before it.
            let suppressedNoted = failures.compactMap { ($0["details"] as? [String: String])?["suppressed_before"] }.compactMap { Int($0) }
            #expect(suppressedNoted.reduce(0, +) <= flood - failures.count)
        }

        /// The build before audited a refused call's whole path: anyone, without a credential,
        /// wrote 75 KB into the shared Redis per audited refusal (one a second), and a lift took
        /// a reason of 70 KB into the signed log every gateway syncs (an attacker review).
        @Test("an unauthenticated call with a 60 KB path is audited with at most 1 KiB of it, cut and saying how long it was; a lift's reason over 1 024 bytes, and an issuer with a control, separator or bidirectional character, are refused 400 and nothing is written")
        func auditedValuesAreBounded() async throws {
            let cluster = try await ControlCluster(authorizationServer: false)
            defer { Task { await cluster.shutdown() } }
            let control = cluster.control
            let longPath = "/v1/" + String(repeating: "A", count: 60_000)
            #expect(try control.admin("POST", longPath, token: "").status == 401)
            let entries = try control.admin("GET", "/v1/audit?count=10").json["entries"] as? [[String: Any]] ?? []
            let action = entries.first { $0["outcome"] as? String == "unauthorized" }?["action"] as? String ?? ""
            #expect(action.hasPrefix("POST /v1/AAAA") && action.utf8.count <= 1_100 && action.hasSuffix("(cut, 60009 bytes)"),
                    "\(action.utf8.count) bytes: \(action.suffix(40))")

            let created = try control.admin("POST", "/v1/revocations", json: #"{"kind":"subject","value":"mallory"}"#)
            #expect(created.status == 201)
            let id = created.json["id"] as? String ?? ""
            let sequence = try cluster.redis.cli("XLEN", "portcullis:audit")
            let lift = try control.admin("DELETE", "/v1/revocations/\(id)?reason=" + String(repeating: "R", count: 2_000))
            #expect(lift.status == 400, "\(lift.status) \(lift.text)")
            for escape in ["\\u0001", "\\u0085", "\\u202e", "\\u2028"] {
                let issuer = try control.admin("POST", "/v1/revocations", json: #"{"kind":"subject","value":"eve","issuer":"https://a"# + escape + #"b"}"#)
                #expect(issuer.status == 400, "\(escape): \(issuer.status) \(issuer.text)")
            }
            #expect(try cluster.redis.cli("XLEN", "portcullis:audit") == String(Int(sequence)! + 5), "every refusal audited")
            // Nothing was lifted: a lift with a short reason is the first.
            let second = try control.admin("DELETE", "/v1/revocations/\(id)?reason=done")
            #expect(second.status == 200, "\(second.status) \(second.text)")
        }
    }
}
