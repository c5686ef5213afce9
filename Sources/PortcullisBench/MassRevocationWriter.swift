import Foundation
import PortcullisCluster

/// Writes a large revocation list the way a mass revocation is written: signed changes of 1 000
/// jtis each, 100 changes per script call (the admin API's batch call writes the same shape).
enum MassRevocationWriter {
    /// Writes `entries` jti revocations expiring in an hour; returns the last change's event.
    @discardableResult
    static func write(entries: Int, store: RevocationStore, label: String = "jti") async throws -> RevocationEvent? {
        let exp = Int64(Date().timeIntervalSince1970) + 3600
        var changes: [Revocation] = []
        var last: RevocationEvent?
        var index = 0
        while index < entries {
            let count = min(1000, entries - index)
            let tokens = (index..<(index + count)).map { Revocation.Token(jti: "\(label)-\($0)-\(UInt64.random(in: 0...UInt64.max))", expiresAt: exp) }
            changes.append(Revocation(id: "rev_bench_\(label)_\(index)", operation: .add, kind: .jti, value: tokens[0].jti, issuer: nil,
                                      until: exp, createdAtMillis: exp * 1000, actor: "bench", reason: nil, batch: Array(tokens.dropFirst())))
            index += count
            if changes.count == 100 {
                last = try await store.writeBatch(changes).last ?? last
                changes = []
            }
        }
        if !changes.isEmpty { last = try await store.writeBatch(changes).last ?? last }
        return last
    }

    /// The join-sync time a gateway logged (`revocations synced … duration_ms=N`), if it did.
    static func loggedSyncMillis(_ output: String) -> String {
        let syncLine = output.split(separator: "\n").first { $0.contains("revocations synced") } ?? ""
        return syncLine.split(separator: " ").first { $0.hasPrefix("duration_ms=") }.map { String($0.dropFirst(12)) } ?? "?"
    }
}
