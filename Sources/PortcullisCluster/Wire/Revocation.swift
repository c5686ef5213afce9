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
        /// Every token of one subject (`value`) issued to one client (`client`) before `until`:
        /// a user's access for a client revoked — whatever lists of issued tokens say.
        case grant
        /// Every token signed by a key (`kid`): the key leaves the key set.
        case key
        /// Every token carrying a session id (`sid`, the built-in authorization server's refresh-
        /// token family), in force until `until`: the tokens of one sign-in or grant, however
        /// many were issued, whatever lists of issued tokens say.
        case session

        /// Subject, client and grant revocations: a cut-off by issue time, which a delete can lift.
        public var isCutoff: Bool { self == .subject || self == .client || self == .grant }
    }

    public enum Operation: String, Sendable {
        case add
        /// Lifts one subject, client or grant cut-off, named by `lifts` (jti and key revocations
        /// cannot be undone).
        case delete
    }

    /// A further token of a batch jti revocation.
    public struct Token: Sendable, Equatable {
        public var jti: String
        /// The token's `exp`, Unix seconds.
        public var expiresAt: Int64

        public init(jti: String, expiresAt: Int64) {
            self.jti = jti
            self.expiresAt = expiresAt
        }
    }

    public var id: String
    public var operation: Operation
    public var kind: Kind
    /// The jti, subject, client id, kid or session id; a grant's subject.
    public var value: String
    /// A grant's client id (`client_id`, else `azp`); nil for every other kind.
    public var client: String?
    /// Limits a subject, client, grant, key or session revocation to one issuer (`iss`); nil means every issuer.
    public var issuer: String?
    /// jti: the token's `exp`. session: when the revocation ends (the latest `exp` of the
    /// session's tokens). key: when it was revoked. subject/client/grant: the cut-off in whole
    /// seconds — rounded up when `beforeMillis` is set, so that `iat < until` and
    /// `iat × 1000 < beforeMillis` agree for every whole-second `iat`. Unix seconds.
    public var until: Int64
    /// subject/client/grant adds: the cut-off in Unix milliseconds (tokens with `iat` before it are
    /// revoked). nil in changes written before cut-offs had milliseconds: their cut-off is `until`.
    public var beforeMillis: Int64?
    /// Unix milliseconds when the admin API accepted it.
    public var createdAtMillis: Int64
    /// Who asked (the admin credential's name).
    public var actor: String
    public var reason: String?
    /// A delete: the id of the `add` it lifts. A node drops a cut-off only for a delete naming it.
    public var lifts: String?
    /// A jti add may carry more tokens, revoked in the same signed change (mass revocation).
    public var batch: [Token]

    public init(id: String, operation: Operation, kind: Kind, value: String, issuer: String?, until: Int64,
                createdAtMillis: Int64, actor: String, reason: String?, lifts: String? = nil, batch: [Token] = [],
                beforeMillis: Int64? = nil, client: String? = nil) {
        self.id = id
        self.operation = operation
        self.kind = kind
        self.value = value
        self.issuer = issuer
        self.until = until
        self.createdAtMillis = createdAtMillis
        self.actor = actor
        self.reason = reason
        self.lifts = lifts
        self.batch = batch
        self.beforeMillis = beforeMillis
        self.client = client
    }

    /// A subject, client or grant cut-off in Unix milliseconds: `beforeMillis`, or for a change in the
    /// older format its whole-second `until`.
    public var cutoffMillis: Int64 {
        if let beforeMillis { return beforeMillis }
        let (millis, overflow) = until.multipliedReportingOverflow(by: 1000)
        return overflow ? (until < 0 ? .min : .max) : millis
    }

    /// Every token a jti change revokes (`value` first, then the batch).
    public var tokens: [Token] {
        [Token(jti: value, expiresAt: until)] + batch
    }

    /// How many revocations this change holds (a jti batch holds several).
    public var count: Int { 1 + batch.count }

    /// The latest `exp` among the tokens of a jti change.
    var latestExpiry: Int64 {
        batch.reduce(until) { max($0, $1.expiresAt) }
    }

    /// When a jti or session change stops mattering (its last token's `exp`, the session's
    /// `until`), Unix seconds; nil for kinds in force until lifted or for good.
    var expiry: Int64? {
        switch kind {
        case .jti: latestExpiry
        case .session: until
        case .subject, .client, .grant, .key: nil
        }
    }

    /// From when a jti or session change may leave the log: its `expiry` plus the grace nodes
    /// keep entries for (`RevocationSet.expiryGrace`), `Int64.max` where that sum overflows; nil
    /// for kinds without an expiry.
    var prunableAt: Int64? {
        expiry.map { expiry in
            let (time, overflow) = expiry.addingReportingOverflow(RevocationSet.expiryGrace)
            return overflow ? .max : time
        }
    }

    /// Key of this revocation in a node's cut-off and key tables: `issuer|value`, `*` for any
    /// issuer; a grant's also holds its client (`Revocation.grantKey`).
    var scopedValue: String {
        if let client { return Self.grantKey(issuer: issuer ?? "*", subject: value, client: client) }
        return (issuer ?? "*") + "|" + value
    }

    /// A grant's key: `issuer|<client's length in bytes>:<client><subject>` — the issuer holds no
    /// `|` and the client's length is stated, so no two (issuer, client, subject) share a key.
    static func grantKey(issuer: String, subject: String, client: String) -> String {
        issuer + "|" + String(client.utf8.count) + ":" + client + subject
    }

    /// Everything the MAC covers besides the position (`RevocationEvent.macFields` adds epoch and
    /// sequence): every field, nil distinct from empty. `beforeMillis` and `client` are appended
    /// only when set, so changes written before they existed still verify; the fields are
    /// length-prefixed and labelled, so a list with one can never be read as one without it.
    var macFields: [String] {
        var fields = [id, operation.rawValue, kind.rawValue, value, ClusterMAC.optional(issuer), String(until),
                      String(createdAtMillis), actor, ClusterMAC.optional(reason), ClusterMAC.optional(lifts), String(batch.count), batchField]
        if let beforeMillis { fields.append("before_ms:" + String(beforeMillis)) }
        if let client { fields.append("client:" + client) }
        return fields
    }

    /// The batch as one field, each token length-prefixed (`<bytes>:<jti><exp>;`): unambiguous,
    /// and one string to build per change rather than two per token (a node verifies a thousand
    /// tokens per change when it syncs).
    private var batchField: String {
        guard !batch.isEmpty else { return "" }
        var field = ""
        field.reserveCapacity(batch.reduce(0) { $0 + $1.jti.utf8.count + 24 })
        for token in batch {
            field += String(token.jti.utf8.count)
            field += ":"
            field += token.jti
            field += String(token.expiresAt)
            field += ";"
        }
        return field
    }

    /// The JSON members (without position and MAC).
    var jsonMembers: [String: JSONValue] {
        var object: [String: JSONValue] = [
            "id": .string(id), "op": .string(operation.rawValue), "kind": .string(kind.rawValue),
            "value": .string(value), "until": .integer(until), "created_ms": .integer(createdAtMillis),
            "actor": .string(actor),
        ]
        if let issuer { object["issuer"] = .string(issuer) }
        if let reason { object["reason"] = .string(reason) }
        if let lifts { object["lifts"] = .string(lifts) }
        if let beforeMillis { object["before_ms"] = .integer(beforeMillis) }
        if let client { object["client"] = .string(client) }
        if !batch.isEmpty {
            object["batch"] = .array(batch.map { .array([.string($0.jti), .integer($0.expiresAt)]) })
        }
        return object
    }

    init(json: JSONValue) throws(RevocationEvent.DecodeError) {
        guard let id = json["id"]?.stringValue, let op = json["op"]?.stringValue.flatMap(Operation.init(rawValue:)),
              let kind = json["kind"]?.stringValue.flatMap(Kind.init(rawValue:)), let value = json["value"]?.stringValue,
              let until = json["until"]?.int64Value, let created = json["created_ms"]?.int64Value,
              let actor = json["actor"]?.stringValue else {
            throw .malformed("missing or mistyped field")
        }
        var batch: [Token] = []
        if let items = json["batch"] {
            guard let array = items.arrayValue else { throw .malformed("batch is not an array") }
            batch.reserveCapacity(array.count)
            for item in array {
                guard let pair = item.arrayValue, pair.count == 2, let jti = pair[0].stringValue, let exp = pair[1].int64Value else {
                    throw .malformed("batch entries are [jti, exp]")
                }
                batch.append(Token(jti: jti, expiresAt: exp))
            }
        }
        func optionalString(_ name: String) throws(RevocationEvent.DecodeError) -> String? {
            guard let member = json[name] else { return nil }
            guard let text = member.stringValue else { throw .malformed("\(name) is not a string") }
            return text
        }
        var beforeMillis: Int64?
        if let member = json["before_ms"] {
            guard let millis = member.int64Value else { throw .malformed("before_ms is not an integer") }
            beforeMillis = millis
        }
        self.init(id: id, operation: op, kind: kind, value: value, issuer: try optionalString("issuer"), until: until,
                  createdAtMillis: created, actor: actor, reason: try optionalString("reason"), lifts: try optionalString("lifts"),
                  batch: batch, beforeMillis: beforeMillis, client: try optionalString("client"))
        if let problem = shapeProblem { throw .malformed(problem) }
    }

    /// What makes this change ill-formed, nil when it is well formed: checked before a change is
    /// written (`RevocationStore`) and when one is read.
    var shapeProblem: String? {
        if beforeMillis != nil, !(operation == .add && kind.isCutoff) { return "only subject, client and grant cut-offs carry before_ms" }
        if (kind == .grant) != (client != nil) { return "a grant names its client, no other kind does" }
        if !batch.isEmpty, kind != .jti { return "only jti changes carry a batch" }
        if (operation == .delete) != (lifts != nil) { return "a delete names the change it lifts, an add does not" }
        if kind == .session, operation == .delete { return "a session revocation cannot be lifted" }
        return nil
    }
}
