/// A node's signed statement "I applied everything through `sequence` of `epoch`" — the one way
/// a node confirms revocation state, stored in its node record, in `rev:acks:<seq>` and published
/// on `rev:acks`. Bound to the node id, so a Redis writer can neither forge one nor move one
/// node's acknowledgement to another. Wire text:
/// `ack2 <node> <epoch> <seq> <latency_us> <mac>` (latency -1 when applied by a catch-up).
public struct NodeAck: Sendable, Equatable {
    public var node: String
    public var epoch: RevocationEpoch
    public var sequence: Int64
    /// Durable write to applied, as the node measured it; nil when applied by a catch-up or resync.
    public var latencyMicros: Int64?
    public var mac: String

    /// The longest latency an acknowledgement may carry (a day); longer is not a measurement.
    public static let maxLatencyMicros: Int64 = 86_400_000_000

    public enum DecodeError: Error, Equatable, CustomStringConvertible {
        case malformed
        case badMAC

        public var description: String {
            switch self {
            case .malformed: "malformed acknowledgement"
            case .badMAC: "acknowledgement MAC does not verify (forged, or moved from another node)"
            }
        }
    }

    public static func signed(node: String, epoch: RevocationEpoch, sequence: Int64, latencyMicros: Int64?, mac: ClusterMAC) -> NodeAck {
        NodeAck(node: node, epoch: epoch, sequence: sequence, latencyMicros: latencyMicros,
                mac: mac.sign(macFields(node: node, epoch: epoch, sequence: sequence, latency: latencyMicros ?? -1)))
    }

    static func macFields(node: String, epoch: RevocationEpoch, sequence: Int64, latency: Int64) -> [String] {
        ["ack2", node, epoch.text, String(sequence), String(latency)]
    }

    public var wireText: String { "ack2 \(node) \(epoch.text) \(sequence) \(latencyMicros ?? -1) \(mac)" }

    public static func decode(_ text: String, mac: ClusterMAC) throws(DecodeError) -> NodeAck {
        let parts = text.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 6, parts[0] == "ack2", !parts[1].isEmpty, let epoch = RevocationEpoch(text: String(parts[2])),
              let sequence = Int64(parts[3]), sequence > 0, let latency = Int64(parts[4]),
              latency >= -1, latency <= maxLatencyMicros else { throw .malformed }
        let node = String(parts[1])
        guard mac.verify(String(parts[5]), macFields(node: node, epoch: epoch, sequence: sequence, latency: latency)) else { throw .badMAC }
        return NodeAck(node: node, epoch: epoch, sequence: sequence, latencyMicros: latency >= 0 ? latency : nil, mac: String(parts[5]))
    }
}
