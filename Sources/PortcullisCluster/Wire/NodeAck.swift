/// A node's signed statement "I applied everything through `sequence` of `epoch`, and the change
/// I applied at `sequence` is the one with MAC `last`" — the one way a node confirms revocation
/// state, stored in its node record, in `rev:acks:<seq>` and published on `rev:acks`. Bound to the
/// node id and to the node process (`instance`, new at every start), so a Redis writer can neither
/// forge one, nor move one node's acknowledgement to another, nor let an acknowledgement of a
/// process that has since restarted count for the new one; `last` lets the control plane count it
/// only when the node applied the change that was committed at that sequence. Wire text:
/// `ack3 <node> <instance> <epoch> <seq> <last> <latency_us> <mac>` (latency -1 when applied by a
/// catch-up, `last` `-` when unknown).
public struct NodeAck: Sendable, Equatable {
    public var node: String
    /// Random per process start.
    public var instance: String
    public var epoch: RevocationEpoch
    public var sequence: Int64
    /// The MAC of the change the node applied at `sequence` ("" when it reached it over pruned entries).
    public var last: String
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

    public static func signed(node: String, instance: String, epoch: RevocationEpoch, sequence: Int64, last: String,
                              latencyMicros: Int64?, mac: ClusterMAC) -> NodeAck {
        NodeAck(node: node, instance: instance, epoch: epoch, sequence: sequence, last: last, latencyMicros: latencyMicros,
                mac: mac.sign(macFields(node: node, instance: instance, epoch: epoch, sequence: sequence, last: last, latency: latencyMicros ?? -1)))
    }

    static func macFields(node: String, instance: String, epoch: RevocationEpoch, sequence: Int64, last: String, latency: Int64) -> [String] {
        ["ack3", node, instance, epoch.text, String(sequence), last, String(latency)]
    }

    public var wireText: String {
        "ack3 \(node) \(instance) \(epoch.text) \(sequence) \(last.isEmpty ? "-" : last) \(latencyMicros ?? -1) \(mac)"
    }

    /// The longest text an acknowledgement takes (a 128-byte node id, two MACs, an epoch and
    /// three numbers come to about 350 bytes).
    public static let maxBytes = 1024

    public static func decode(_ text: String, mac: ClusterMAC) throws(DecodeError) -> NodeAck {
        // Bounded before it is split: a long run of spaces published on `rev:acks`, one part
        // each, would cost the control plane memory many times its size.
        guard text.utf8.count <= maxBytes else { throw .malformed }
        let parts = text.split(separator: " ", maxSplits: 8, omittingEmptySubsequences: false)
        guard parts.count == 8, parts[0] == "ack3", !parts[1].isEmpty, !parts[2].isEmpty, let epoch = RevocationEpoch(text: String(parts[3])),
              let sequence = Int64(parts[4]), sequence > 0, let latency = Int64(parts[6]),
              latency >= -1, latency <= maxLatencyMicros else { throw .malformed }
        let node = String(parts[1]), instance = String(parts[2])
        let last = parts[5] == "-" ? "" : String(parts[5])
        guard mac.verify(String(parts[7]), macFields(node: node, instance: instance, epoch: epoch, sequence: sequence, last: last,
                                                     latency: latency)) else { throw .badMAC }
        return NodeAck(node: node, instance: instance, epoch: epoch, sequence: sequence, last: last,
                       latencyMicros: latency >= 0 ? latency : nil, mac: String(parts[7]))
    }
}
