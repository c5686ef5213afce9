import PortcullisJOSE

/// One revocation change as the admin API made it.
public struct Revocation: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        /// One token, by `jti`; in force until the token's `exp`.
        case jti
        /// Every token of a subject (`sub`) issued before `until`.
        case subject
        /// Every token of a client (`client_id`, else `azp`) issued before `until`.
        case client
        /// Every token signed by a key (`kid`): the key leaves the key set.
        case key
    }

    public enum Operation: String, Sendable {
        case add
        /// Lifts a subject or client cut-off (jti and key revocations cannot be undone).
        case delete
    }

    public var id: String
    public var operation: Operation
    public var kind: Kind
    /// The jti, subject, client id or kid.
    public var value: String
    /// Limits a subject, client or key revocation to one issuer (`iss`); nil means every issuer.
    public var issuer: String?
    /// jti: the token's `exp`. subject/client: the cut-off (tokens with `iat` before it are revoked).
    /// key: when it was revoked. Unix seconds.
    public var until: Int64
    /// Unix milliseconds when the admin API accepted it.
    public var createdAtMillis: Int64
    /// Who asked (the admin credential's name).
    public var actor: String
    public var reason: String?

    public init(id: String, operation: Operation, kind: Kind, value: String, issuer: String?, until: Int64,
                createdAtMillis: Int64, actor: String, reason: String?) {
        self.id = id
        self.operation = operation
        self.kind = kind
        self.value = value
        self.issuer = issuer
        self.until = until
        self.createdAtMillis = createdAtMillis
        self.actor = actor
        self.reason = reason
    }

    /// The fields the cluster MAC covers (sequence and write time are assigned by Redis, after signing).
    var macFields: [String] {
        ["rev1", id, operation.rawValue, kind.rawValue, value, issuer ?? "", String(until), String(createdAtMillis), actor]
    }

    /// Key of this revocation in the subject/client/key hashes.
    var scopedValue: String { (issuer ?? "*") + "|" + value }

    /// JSON object with the MAC, as stored and published.
    func json(mac: String) -> String {
        var object: [String: JSONValue] = [
            "id": .string(id), "op": .string(operation.rawValue), "kind": .string(kind.rawValue),
            "value": .string(value), "until": .integer(until), "created_ms": .integer(createdAtMillis),
            "actor": .string(actor), "mac": .string(mac),
        ]
        if let issuer { object["issuer"] = .string(issuer) }
        if let reason { object["reason"] = .string(reason) }
        return JSONWriter.serialize(.object(object))
    }
}

/// A revocation change with the sequence number and write time Redis gave it.
/// Wire text (log entries and pub/sub messages): `<seq> <written_us> <json>`.
public struct RevocationEvent: Sendable, Equatable {
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
            case .badMAC: "revocation event MAC does not verify (not written by a holder of the cluster secret)"
            }
        }
    }

    /// Parses and authenticates wire text.
    public static func decode(_ bytes: [UInt8], mac: ClusterMAC) throws(DecodeError) -> RevocationEvent {
        guard let firstSpace = bytes.firstIndex(of: 0x20),
              let secondSpace = bytes[(firstSpace + 1)...].firstIndex(of: 0x20),
              let sequence = Int64(String(decoding: bytes[..<firstSpace], as: UTF8.self)),
              let written = Int64(String(decoding: bytes[(firstSpace + 1)..<secondSpace], as: UTF8.self)) else {
            throw .malformed("expected '<seq> <time> <json>'")
        }
        let json: JSONValue
        do {
            json = try JOSEJSONReader.parse(Array(bytes[(secondSpace + 1)...]))
        } catch {
            throw .malformed("\(error)")
        }
        guard let id = json["id"]?.stringValue, let op = json["op"]?.stringValue.flatMap(Revocation.Operation.init(rawValue:)),
              let kind = json["kind"]?.stringValue.flatMap(Revocation.Kind.init(rawValue:)), let value = json["value"]?.stringValue,
              let until = json["until"]?.int64Value, let created = json["created_ms"]?.int64Value,
              let actor = json["actor"]?.stringValue, let macText = json["mac"]?.stringValue else {
            throw .malformed("missing or mistyped field")
        }
        let revocation = Revocation(id: id, operation: op, kind: kind, value: value, issuer: json["issuer"]?.stringValue,
                                    until: until, createdAtMillis: created, actor: actor, reason: json["reason"]?.stringValue)
        guard mac.verify(macText, revocation.macFields) else { throw .badMAC }
        return RevocationEvent(sequence: sequence, writtenAtMicros: written, revocation: revocation, mac: macText)
    }
}
