/// Which Redis history a revocation belongs to: `<created_ms>-<random hex>`, chosen by the control
/// plane when it finds no valid head in Redis (a new cluster, or Redis lost its data). Epochs are
/// ordered by their creation time, so a node never goes back to an older history that a Redis
/// writer replays.
public struct RevocationEpoch: Sendable, Hashable, CustomStringConvertible {
    public let createdAtMillis: Int64
    public let text: String

    public init?(text: String) {
        let parts = text.split(separator: "-", maxSplits: 1)
        guard parts.count == 2, let created = Int64(parts[0]), created > 0, parts[1].count == 16,
              parts[1].allSatisfy(\.isHexDigit) else { return nil }
        createdAtMillis = created
        self.text = text
    }

    /// A new epoch, created now (never earlier than `after`, so epochs only move forward).
    public static func new(nowMillis: Int64, after previous: RevocationEpoch?) -> RevocationEpoch {
        var generator = SystemRandomNumberGenerator()
        let random = String(UInt64.random(in: .min ... .max, using: &generator), radix: 16)
        let created = max(nowMillis, (previous?.createdAtMillis ?? 0) + 1)
        return RevocationEpoch(text: "\(created)-" + String(repeating: "0", count: 16 - random.count) + random)!
    }

    /// True when `self` is a later history than `other`.
    public func isNewer(than other: RevocationEpoch) -> Bool {
        (createdAtMillis, text) > (other.createdAtMillis, other.text)
    }

    public var description: String { text }
}
