import PortcullisJOSE

/// A revocation change at its place in the cluster's history: the epoch (which Redis history) and
/// sequence number it was signed for, and the Redis time of its durable write.
///
/// Wire text (log entries and pub/sub lines): `<seq> <written_us> <json>`, the JSON holding the
/// change, its epoch and the MAC. The MAC binds the cluster id, epoch, sequence and every field of
/// the change, so a signed event cannot be moved to another place in the log, another history or
/// another cluster. `written_us` is Redis `TIME`, set by the write script after signing: it only
/// feeds the propagation latency figures and is not authenticated.
public struct RevocationEvent: Sendable, Equatable {
    public var epoch: RevocationEpoch
    public var sequence: Int64
    /// Redis `TIME` at the durable write, in microseconds: the start of propagation.
    public var writtenAtMicros: Int64
    public var revocation: Revocation
    public var mac: String

    /// Why wire text was not accepted.
    public enum DecodeError: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        case badMAC

        public var description: String {
            switch self {
            case .malformed(let why): "malformed revocation event: \(why)"
            case .badMAC: "revocation event MAC does not verify (not written by a holder of the cluster secret, or moved from its place)"
            }
        }
    }

    /// Latest plausible write time (the year 2100), in microseconds.
    static let maxWrittenAtMicros: Int64 = 4_102_444_800_000_000

    static func macFields(epoch: RevocationEpoch, sequence: Int64, _ revocation: Revocation) -> [String] {
        ["rev2", epoch.text, String(sequence)] + revocation.macFields
    }

    /// Signs `revocation` for position `sequence` of `epoch`; `writtenAtMicros` is filled in by the write.
    public static func signed(_ revocation: Revocation, epoch: RevocationEpoch, sequence: Int64, mac: ClusterMAC) -> RevocationEvent {
        RevocationEvent(epoch: epoch, sequence: sequence, writtenAtMicros: 0, revocation: revocation,
                        mac: mac.sign(macFields(epoch: epoch, sequence: sequence, revocation)))
    }

    /// The JSON part of the wire text (the write script puts `<seq> <written_us> ` in front).
    public var json: String {
        var object = revocation.jsonMembers
        object["epoch"] = .string(epoch.text)
        object["mac"] = .string(mac)
        return JSONWriter.serialize(.object(object))
    }

    /// The whole wire text.
    public var wireText: String { "\(sequence) \(writtenAtMicros) \(json)" }

    /// The longest line a signed change takes: a batch of 1 000 tokens whose ids are at most
    /// 1 KiB each, every byte of them escaped in JSON, and the change's own fields.
    public static let maxLineBytes = 8 << 20
    /// The most JSON values a change holds: its members, and three for each batch token.
    static let maxValues = 4096
    /// How deep a change's JSON goes: the object, its batch array, a token's pair.
    static let maxDepth = 3

    /// Parses and authenticates wire text. Text a Redis writer may have written is bounded
    /// before it is parsed (`maxLineBytes`, `maxValues`, `maxDepth`), since the MAC can only be
    /// checked after.
    public static func decode(_ bytes: [UInt8], mac: ClusterMAC) throws(DecodeError) -> RevocationEvent {
        guard bytes.count <= maxLineBytes else { throw .malformed("\(bytes.count) bytes, more than a signed change takes") }
        guard let firstSpace = bytes.firstIndex(of: 0x20),
              let secondSpace = bytes[(firstSpace + 1)...].firstIndex(of: 0x20),
              let sequence = Int64(String(decoding: bytes[..<firstSpace], as: UTF8.self)),
              let written = Int64(String(decoding: bytes[(firstSpace + 1)..<secondSpace], as: UTF8.self)) else {
            throw .malformed("expected '<seq> <time> <json>'")
        }
        // The write time is not signed: keep it where arithmetic on it cannot overflow.
        guard sequence > 0, (0...Self.maxWrittenAtMicros).contains(written) else { throw .malformed("sequence or write time out of range") }
        let json: JSONValue
        do {
            json = try JOSEJSONReader.parse(Array(bytes[(secondSpace + 1)...]), maxDepth: Self.maxDepth, maxValues: Self.maxValues)
        } catch {
            throw .malformed("\(error)")
        }
        guard let epochText = json["epoch"]?.stringValue, let epoch = RevocationEpoch(text: epochText),
              let macText = json["mac"]?.stringValue else {
            throw .malformed("missing epoch or mac")
        }
        let revocation = try Revocation(json: json)
        guard mac.verify(macText, macFields(epoch: epoch, sequence: sequence, revocation)) else { throw .badMAC }
        return RevocationEvent(epoch: epoch, sequence: sequence, writtenAtMicros: written, revocation: revocation, mac: macText)
    }

    /// Splits a pub/sub message (one or more wire lines, a batch write publishes them together).
    static func lines(_ message: [UInt8]) -> [ArraySlice<UInt8>] {
        message.split(separator: 0x0A, omittingEmptySubsequences: true)
    }
}
