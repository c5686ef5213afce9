import Foundation
@testable import PortcullisCluster
import Testing

@Suite("cluster wire formats: what the MAC binds")
struct ClusterWireUnitTests {
    static let mac = ClusterMAC(secret: [UInt8](repeating: 5, count: 32), cluster: "portcullis:")
    static let epoch = RevocationEpoch.new(nowMillis: 1_764_000_000_000, after: nil)

    static func revocation(issuer: String? = nil, reason: String? = nil) -> Revocation {
        Revocation(id: "rev_1", operation: .add, kind: .subject, value: "alice", issuer: issuer, until: 100, createdAtMillis: 5,
                   actor: "ops", reason: reason)
    }

    static func decodes(_ text: String, mac: ClusterMAC = mac) -> Bool {
        (try? RevocationEvent.decode(Array(text.utf8), mac: mac)) != nil
    }

    @Test("an event decodes to what was signed, write time included")
    func roundTrip() throws {
        var event = RevocationEvent.signed(Self.revocation(issuer: "https://idp", reason: "leak"), epoch: Self.epoch, sequence: 7, mac: Self.mac)
        event.writtenAtMicros = 1_764_000_000_000_000
        #expect(try RevocationEvent.decode(Array(event.wireText.utf8), mac: Self.mac) == event)
    }

    /// Text a Redis writer may write is parsed before its MAC can be checked: without bounds, a
    /// line of a million empty objects took every node past a gigabyte (an attacker review).
    @Test("the largest honest change (a batch of 1 000 tokens with 1 KiB ids, every byte escaped) decodes; a line over 8 MiB, one with more JSON values than a change holds, one nested deeper, and a head or acknowledgement over 1 KiB are refused unparsed")
    func decodingIsBounded() throws {
        let id = String(repeating: "\u{1}", count: 1020)  // escaped as \u0001: six bytes each
        let batch = (0..<999).map { Revocation.Token(jti: id + String($0), expiresAt: 100) }
        let largest = Revocation(id: "rev_1", operation: .add, kind: .jti, value: id, issuer: nil, until: 100, createdAtMillis: 5,
                                 actor: "ops", reason: nil, batch: batch)
        let event = RevocationEvent.signed(largest, epoch: Self.epoch, sequence: 9, mac: Self.mac)
        #expect(event.wireText.utf8.count > 5 << 20 && event.wireText.utf8.count <= RevocationEvent.maxLineBytes)
        #expect(try RevocationEvent.decode(Array(event.wireText.utf8), mac: Self.mac) == event)
        func refused(_ text: String) -> String {
            do {
                _ = try RevocationEvent.decode(Array(text.utf8), mac: Self.mac)
                return "decoded"
            } catch {
                return "\(error)"
            }
        }
        #expect(refused("1 0 \"" + String(repeating: "x", count: RevocationEvent.maxLineBytes) + "\"").contains("more than a signed change takes"))
        #expect(refused("1 0 {\"a\":[" + Array(repeating: "{}", count: 5000).joined(separator: ",") + "]}").contains("more values than allowed"))
        #expect(refused("1 0 {\"a\":[[[[]]]]}").contains("nesting deeper"))
        #expect(throws: RevocationHead.DecodeError.malformed) { try RevocationHead.decode("head3" + String(repeating: " ", count: 2000), mac: Self.mac) }
        #expect(throws: NodeAck.DecodeError.malformed) { try NodeAck.decode("ack3" + String(repeating: " ", count: 2000), mac: Self.mac) }
    }

    @Test("the MAC binds the sequence, the epoch, the cluster and every field; nil and empty differ")
    func bindings() {
        let event = RevocationEvent.signed(Self.revocation(), epoch: Self.epoch, sequence: 7, mac: Self.mac)
        #expect(Self.decodes(event.wireText))
        // Moved to another sequence.
        var moved = event
        moved.sequence = 8
        #expect(!Self.decodes(moved.wireText))
        // Another history.
        var other = event
        other.epoch = RevocationEpoch.new(nowMillis: 1_764_000_000_001, after: Self.epoch)
        #expect(!Self.decodes(other.wireText))
        // Another cluster sharing the secret.
        #expect(!Self.decodes(event.wireText, mac: ClusterMAC(secret: [UInt8](repeating: 5, count: 32), cluster: "other:")))
        // The reason and the issuer are covered; nil is not "".
        var reasoned = event
        reasoned.revocation.reason = "changed"
        #expect(!Self.decodes(reasoned.wireText))
        let withEmptyIssuer = RevocationEvent.signed(Self.revocation(issuer: ""), epoch: Self.epoch, sequence: 7, mac: Self.mac)
        var swapped = event
        swapped.mac = withEmptyIssuer.mac
        #expect(!Self.decodes(swapped.wireText))
    }

    @Test("a millisecond cut-off round-trips and its before_ms is under the MAC; an entry in the older format still verifies")
    func millisecondCutoffs() throws {
        var revocation = Self.revocation()
        revocation.beforeMillis = 100_000 - 750
        let event = RevocationEvent.signed(revocation, epoch: Self.epoch, sequence: 7, mac: Self.mac)
        #expect(event.json.contains(#""before_ms":99250"#))
        let decoded = try RevocationEvent.decode(Array(event.wireText.utf8), mac: Self.mac)
        #expect(decoded == event)
        #expect(decoded.revocation.cutoffMillis == 99_250)
        // Changed, or removed (which would make it a whole-second cut-off): the MAC no longer verifies.
        #expect(!Self.decodes(event.wireText.replacingOccurrences(of: #""before_ms":99250"#, with: #""before_ms":99000"#)))
        #expect(!Self.decodes(event.wireText.replacingOccurrences(of: #","before_ms":99250"#, with: "")
            .replacingOccurrences(of: #""before_ms":99250,"#, with: "")))
        // The older format — no before_ms, signed over the fields it had — still verifies; its cut-off is until's second.
        let older = RevocationEvent.signed(Self.revocation(), epoch: Self.epoch, sequence: 8, mac: Self.mac)
        #expect(!older.json.contains("before_ms"))
        let olderDecoded = try RevocationEvent.decode(Array(older.wireText.utf8), mac: Self.mac)
        #expect(olderDecoded.revocation.cutoffMillis == 100_000)
        // Only subject and client adds carry one.
        var jti = Revocation(id: "rev_2", operation: .add, kind: .jti, value: "j", issuer: nil, until: 100, createdAtMillis: 5, actor: "ops", reason: nil)
        jti.beforeMillis = 5
        #expect(!Self.decodes(RevocationEvent.signed(jti, epoch: Self.epoch, sequence: 9, mac: Self.mac).wireText))
    }

    @Test("a grant names its client under the MAC: changed, removed or moved into the subject, it no longer verifies; no other kind carries one")
    func grantClient() throws {
        let grant = Revocation(id: "rev_g", operation: .add, kind: .grant, value: "alice", issuer: "https://idp", until: 100, createdAtMillis: 5,
                               actor: "user:alice", reason: nil, beforeMillis: 99_250, client: "web-app")
        let event = RevocationEvent.signed(grant, epoch: Self.epoch, sequence: 7, mac: Self.mac)
        #expect(event.json.contains(#""client":"web-app""#))
        let decoded = try RevocationEvent.decode(Array(event.wireText.utf8), mac: Self.mac)
        #expect(decoded == event)
        #expect(decoded.revocation.client == "web-app")
        #expect(!Self.decodes(event.wireText.replacingOccurrences(of: #""client":"web-app""#, with: #""client":"other-app""#)))
        #expect(!Self.decodes(event.wireText.replacingOccurrences(of: #","client":"web-app""#, with: "")
            .replacingOccurrences(of: #""client":"web-app","#, with: "")))
        // A grant without its client, and a subject cut-off with one, are malformed even when signed.
        var bare = grant
        bare.client = nil
        #expect(!Self.decodes(RevocationEvent.signed(bare, epoch: Self.epoch, sequence: 8, mac: Self.mac).wireText))
        var subject = Self.revocation()
        subject.client = "web-app"
        #expect(!Self.decodes(RevocationEvent.signed(subject, epoch: Self.epoch, sequence: 9, mac: Self.mac).wireText))
    }

    @Test("a session revocation round-trips with its sid, issuer and end under the MAC; a changed sid or end no longer verifies, and a signed lift of one is malformed")
    func sessionRevocation() throws {
        let session = Revocation(id: "rev_s", operation: .add, kind: .session, value: "fam_1", issuer: "https://idp", until: 2_000,
                                 createdAtMillis: 5, actor: "oauth:web-app", reason: "refresh token reuse")
        let event = RevocationEvent.signed(session, epoch: Self.epoch, sequence: 7, mac: Self.mac)
        let decoded = try RevocationEvent.decode(Array(event.wireText.utf8), mac: Self.mac)
        #expect(decoded == event && decoded.revocation.kind == .session && decoded.revocation.expiry == 2_000)
        #expect(!Self.decodes(event.wireText.replacingOccurrences(of: #""value":"fam_1""#, with: #""value":"fam_2""#)))
        #expect(!Self.decodes(event.wireText.replacingOccurrences(of: #""until":2000"#, with: #""until":1000"#)))
        let lift = Revocation(id: "rev_l", operation: .delete, kind: .session, value: "fam_1", issuer: "https://idp", until: 5,
                              createdAtMillis: 5, actor: "ops", reason: nil, lifts: "rev_s")
        #expect(!Self.decodes(RevocationEvent.signed(lift, epoch: Self.epoch, sequence: 8, mac: Self.mac).wireText))
    }

    @Test("write times outside the plausible range are refused before any arithmetic")
    func writeTimeRange() {
        var event = RevocationEvent.signed(Self.revocation(), epoch: Self.epoch, sequence: 7, mac: Self.mac)
        event.writtenAtMicros = -9_223_372_036_854_775_808
        #expect(!Self.decodes(event.wireText))
        event.writtenAtMicros = 9_000_000_000_000_000_000
        #expect(!Self.decodes(event.wireText))
    }

    @Test("an acknowledgement is bound to its node, epoch and sequence")
    func acknowledgements() throws {
        let ack = NodeAck.signed(node: "gw-1", instance: "a1", epoch: Self.epoch, sequence: 9, last: "lastmac", latencyMicros: 800, mac: Self.mac)
        #expect(try NodeAck.decode(ack.wireText, mac: Self.mac) == ack)
        #expect((try? NodeAck.decode(ack.wireText.replacingOccurrences(of: "gw-1", with: "gw-2"), mac: Self.mac)) == nil)
        #expect((try? NodeAck.decode(ack.wireText.replacingOccurrences(of: " 9 ", with: " 10 "), mac: Self.mac)) == nil)
        #expect((try? NodeAck.decode(ack.wireText.replacingOccurrences(of: " a1 ", with: " a2 "), mac: Self.mac)) == nil)
        #expect((try? NodeAck.decode(ack.wireText.replacingOccurrences(of: "lastmac", with: "othermac"), mac: Self.mac)) == nil)
        let huge = NodeAck.signed(node: "gw-1", instance: "a1", epoch: Self.epoch, sequence: 9, last: "", latencyMicros: .max, mac: Self.mac)
        #expect((try? NodeAck.decode(huge.wireText, mac: Self.mac)) == nil)
    }

    @Test("a head is signed whole, and epochs order by creation time")
    func heads() throws {
        let head = RevocationHead.signed(epoch: Self.epoch, sequence: 12, last: "m12", floor: 3, beat: 40, mac: Self.mac)
        #expect(try RevocationHead.decode(head.wireText, mac: Self.mac) == head)
        #expect((try? RevocationHead.decode(head.wireText.replacingOccurrences(of: " 12 ", with: " 13 "), mac: Self.mac)) == nil)
        #expect((try? RevocationHead.decode(head.wireText.replacingOccurrences(of: " m12 ", with: " m11 "), mac: Self.mac)) == nil)
        #expect((try? RevocationHead.decode("head3 \(Self.epoch) 2 m 3 1 x", mac: Self.mac)) == nil)  // floor above the sequence
        let later = RevocationEpoch.new(nowMillis: 0, after: Self.epoch)
        #expect(later.isNewer(than: Self.epoch))
        #expect(!Self.epoch.isNewer(than: later))
        #expect(RevocationEpoch(text: "not-an-epoch") == nil)
    }

    @Test("a jti batch is one signed change; a lift must name what it lifts")
    func batchesAndLifts() throws {
        var batch = Self.revocation()
        batch.kind = .jti
        batch.batch = [Revocation.Token(jti: "t2", expiresAt: 200), Revocation.Token(jti: "t3", expiresAt: 300)]
        let event = RevocationEvent.signed(batch, epoch: Self.epoch, sequence: 1, mac: Self.mac)
        let decoded = try RevocationEvent.decode(Array(event.wireText.utf8), mac: Self.mac)
        #expect(decoded.revocation.tokens.map(\.jti) == ["alice", "t2", "t3"])
        #expect(decoded.revocation.count == 3)
        var tampered = event
        tampered.revocation.batch.removeLast()
        #expect(!Self.decodes(tampered.wireText))
        var lift = Self.revocation()
        lift.operation = .delete
        #expect(!Self.decodes(RevocationEvent.signed(lift, epoch: Self.epoch, sequence: 2, mac: Self.mac).wireText))
    }
}
