/// The signed head of the revocation log (string `rev:head`): which history (`epoch`), the last
/// sequence number written in it, the MAC of the change written at that sequence (`last`), the
/// `floor` below which pruned entries may be missing, and a `beat` that grows with every write and
/// every control-plane heartbeat.
///
/// A node trusts no unsigned counter: it catches up to the head's sequence, requires every entry
/// above the floor to be present, and counts its state as fresh (for `max_staleness`) only when it
/// has applied a head whose beat it has not seen before. `last` tells a node whether the change it
/// applied at that sequence is the one that was committed there (a signed change whose write
/// failed could otherwise stand in for it). Wire text:
/// `head3 <epoch> <seq> <last> <floor> <beat> <mac>` (`last` is `-` at sequence 0).
public struct RevocationHead: Sendable, Equatable {
    public var epoch: RevocationEpoch
    public var sequence: Int64
    /// The MAC of the change committed at `sequence` ("" at sequence 0).
    public var last: String
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

    public static func signed(epoch: RevocationEpoch, sequence: Int64, last: String, floor: Int64, beat: Int64, mac: ClusterMAC) -> RevocationHead {
        RevocationHead(epoch: epoch, sequence: sequence, last: last, floor: floor, beat: beat,
                       mac: mac.sign(macFields(epoch: epoch, sequence: sequence, last: last, floor: floor, beat: beat)))
    }

    static func macFields(epoch: RevocationEpoch, sequence: Int64, last: String, floor: Int64, beat: Int64) -> [String] {
        ["head3", epoch.text, String(sequence), last, String(floor), String(beat)]
    }

    public var wireText: String { "head3 \(epoch.text) \(sequence) \(last.isEmpty ? "-" : last) \(floor) \(beat) \(mac)" }

    /// The most bytes a signed head takes (`head3`, an epoch, four numbers and two MACs come to
    /// about 150), with room to spare.
    public static let maxBytes = 1024

    public static func decode(_ text: String, mac: ClusterMAC) throws(DecodeError) -> RevocationHead {
        // Bounded before it is split: padded with spaces, the text made one part per space.
        guard text.utf8.count <= maxBytes else { throw .malformed }
        let parts = text.split(separator: " ", maxSplits: 7, omittingEmptySubsequences: false)
        guard parts.count == 7, parts[0] == "head3", let epoch = RevocationEpoch(text: String(parts[1])),
              let sequence = Int64(parts[2]), let floor = Int64(parts[4]), let beat = Int64(parts[5]),
              sequence >= 0, floor >= 0, floor <= sequence, beat >= 0 else { throw .malformed }
        let last = parts[3] == "-" ? "" : String(parts[3])
        let head = RevocationHead(epoch: epoch, sequence: sequence, last: last, floor: floor, beat: beat, mac: String(parts[6]))
        guard mac.verify(head.mac, macFields(epoch: epoch, sequence: sequence, last: last, floor: floor, beat: beat)) else { throw .badMAC }
        return head
    }
}
