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
    }
}
