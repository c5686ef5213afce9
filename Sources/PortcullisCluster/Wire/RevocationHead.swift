/// The signed head of the revocation log (string `rev:head`): which history (`epoch`), the last
/// sequence number written in it, the `floor` below which pruned entries may be missing, and a
/// `beat` that grows with every write and every control-plane heartbeat.
///
/// A node trusts no unsigned counter: it catches up to the head's sequence, requires every entry
/// above the floor to be present, and counts its state as fresh (for `max_staleness`) only when it
/// has applied a head whose beat it has not seen before. Wire text:
/// `head2 <epoch> <seq> <floor> <beat> <mac>`.
public struct RevocationHead: Sendable, Equatable {
    public var epoch: RevocationEpoch
    public var sequence: Int64
    public var floor: Int64
    public var beat: Int64
    public var mac: String

    public enum DecodeError: Error, Equatable, CustomStringConvertible {
        case malformed
        case badMAC

        public var description: String {
            switch self {
            case .malformed: "malformed revocation head"
            case .badMAC: "revocation head MAC does not verify (not written by a holder of the cluster secret)"
            }
        }
    }

    public static func signed(epoch: RevocationEpoch, sequence: Int64, floor: Int64, beat: Int64, mac: ClusterMAC) -> RevocationHead {
        RevocationHead(epoch: epoch, sequence: sequence, floor: floor, beat: beat,
                       mac: mac.sign(macFields(epoch: epoch, sequence: sequence, floor: floor, beat: beat)))
    }

    static func macFields(epoch: RevocationEpoch, sequence: Int64, floor: Int64, beat: Int64) -> [String] {
        ["head2", epoch.text, String(sequence), String(floor), String(beat)]
    }

    public var wireText: String { "head2 \(epoch.text) \(sequence) \(floor) \(beat) \(mac)" }

    public static func decode(_ text: String, mac: ClusterMAC) throws(DecodeError) -> RevocationHead {
        let parts = text.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 6, parts[0] == "head2", let epoch = RevocationEpoch(text: String(parts[1])),
              let sequence = Int64(parts[2]), let floor = Int64(parts[3]), let beat = Int64(parts[4]),
              sequence >= 0, floor >= 0, floor <= sequence else { throw .malformed }
        let head = RevocationHead(epoch: epoch, sequence: sequence, floor: floor, beat: beat, mac: String(parts[5]))
        guard mac.verify(head.mac, macFields(epoch: epoch, sequence: sequence, floor: floor, beat: beat)) else { throw .badMAC }
        return head
    }
}
