import Foundation
@testable import PortcullisCluster
import PortcullisJOSE
import PortcullisTestSupport
import Testing

/// Subject and client cut-offs against real gateways: how far a token's `iat` may lie in the
/// future (the issuer's `iat_leeway_seconds`, default 2 s), and millisecond cut-offs on the wire.
@Suite("cluster: cut-off windows", .serialized)
struct CutoffWindowTests {
    @Test("a token stamped further in the future than the iat leeway is refused, so it cannot outlive a cut-off made before its iat")
    func futureIatCannotOutliveCutoff() async throws {
        try await withCluster { cluster in
            try await cluster.startGateway(id: "gw-1")
            let now = Int64(Date().timeIntervalSince1970)
            // Minted now, but stamped 20 s ahead (inside the 30 s exp/nbf leeway).
            let aheadOfTime = try cluster.token(sub: "carol", iat: now + 20)
            // Stamped 1 s ahead: inside the iat leeway, accepted.
            let slightlyAhead = try cluster.token(sub: "dave", iat: now + 1)
            #expect(try cluster.statuses(slightlyAhead) == [200])

            _ = try await cluster.revoke(.subject, "carol", until: now + 1)
            _ = try await cluster.revoke(.subject, "erin", until: now + 1)  // a marker, to know the cut-offs arrived
            let marker = try cluster.token(sub: "erin", iat: now - 5)
            try await eventually("the cut-offs arrived") { try cluster.statuses(marker) == [401] }
            // Issued before the cut-off, though its iat says later: refused all the same.
            #expect(try cluster.statuses(aheadOfTime) == [401])
            let metrics = try cluster.gateways[0].metrics()
            #expect(metrics.contains(#"reason="issued_in_future""#), "\(metrics)")
        }
    }

    @Test("a cut-off signed at millisecond precision refuses a token issued earlier in its second and passes one from the next second")
    func millisecondCutoffOnTheWire() async throws {
        try await withCluster { cluster in
            try await cluster.startGateway(id: "gw-1")
            let now = Int64(Date().timeIntervalSince1970)
            let sameSecond = try cluster.token(sub: "frank", iat: now)
            let nextSecond = try cluster.token(sub: "frank", iat: now + 1)
            let beforeMillis = now * 1000 + 400
            _ = try await cluster.store.write(Revocation(
                id: "rev_ms_frank", operation: .add, kind: .subject, value: "frank", issuer: nil, until: now + 1,
                createdAtMillis: beforeMillis, actor: "test", reason: nil, beforeMillis: beforeMillis))
            try await eventually("the cut-off arrived") { try cluster.statuses(sameSecond) == [401] }
            #expect(try cluster.statuses(nextSecond) == [200])
        }
    }
}
