import PortcullisJOSE

import PortcullisCluster

/// One signing key of the built-in issuer as stored in Redis (HASH `as:keys`, field = kid).
///
/// The private key is sealed under the key-encryption key; the rest (state, times) is covered by a
/// MAC under the cluster secret together with the kid (the hash field it must sit in) and a
/// `revision` that grows with every write, so a Redis writer can neither edit a key's state
/// (re-activate a retired key), nor move a record to another kid, nor put back an older revision.
struct SigningKeyRecord: Sendable, Equatable {
    enum State: String, Sendable {
        /// Published in the JWKS, not signing yet (a rotation waits for gateways to hold it).
        case pending
        /// The key new tokens are signed with.
        case active
        /// Published until its last token has expired, then removed.
        case retiring
    }

    var kid: String
    var algorithm: JWSAlgorithm
    var state: State
    var createdMillis: Int64
    var activatedMillis: Int64?
    var deactivatedMillis: Int64?
    /// When a retiring key leaves the JWKS.
    var retireAfterMillis: Int64?
    /// The private key (`SigningKey.exportPrivate`) sealed under the key-encryption key.
    var sealed: String
    /// Grows with every write of this kid (Unix ms, or the previous revision + 1).
    var revision: Int64 = 0

    /// The AES-GCM associated data: a sealed key cannot be moved to another kid or algorithm.
    var sealContext: String { "portcullis-as-key1|\(kid)|\(algorithm.rawValue)" }

    var macFields: [String] {
        ["ask1", kid, algorithm.rawValue, state.rawValue, String(createdMillis), ClusterMAC.optional(activatedMillis.map(String.init)),
         ClusterMAC.optional(deactivatedMillis.map(String.init)), ClusterMAC.optional(retireAfterMillis.map(String.init)), sealed,
         String(revision)]
    }

    /// The stored JSON, signed.
    func json(mac: ClusterMAC) -> String {
        var object: [String: JSONValue] = [
            "kid": .string(kid), "alg": .string(algorithm.rawValue), "state": .string(state.rawValue),
            "created_ms": .integer(createdMillis), "sealed": .string(sealed), "revision": .integer(revision),
            "mac": .string(mac.sign(macFields)),
        ]
        if let activatedMillis { object["activated_ms"] = .integer(activatedMillis) }
        if let deactivatedMillis { object["deactivated_ms"] = .integer(deactivatedMillis) }
        if let retireAfterMillis { object["retire_after_ms"] = .integer(retireAfterMillis) }
        return JSONWriter.serialize(.object(object))
    }

    init(kid: String, algorithm: JWSAlgorithm, state: State, createdMillis: Int64, sealed: String) {
        self.kid = kid
        self.algorithm = algorithm
        self.state = state
        self.createdMillis = createdMillis
        self.sealed = sealed
    }

    /// The longest stored record read.
    static let maxBytes = 64 * 1024

    /// Parses and authenticates a stored record found under hash field `field`; nil when it is
    /// malformed, its MAC does not verify, or it names another kid than its field.
    ///
    /// Bounded before it is parsed (a sealed RSA-4096 key is about 4 KB; a record has a dozen
    /// members): a large field of empty objects, parsed whole at every reload, would cost the
    /// control plane memory many times its size.
    init?(json text: String, field: String, mac: ClusterMAC) {
        guard text.utf8.count <= Self.maxBytes, let value = try? JOSEJSONReader.parse(Array(text.utf8), maxDepth: 2, maxValues: 64),
              let kid = value["kid"]?.stringValue, kid == field, let alg = value["alg"]?.stringValue.flatMap(JWSAlgorithm.init(rawValue:)),
              let state = value["state"]?.stringValue.flatMap(State.init(rawValue:)),
              let created = value["created_ms"]?.int64Value, let sealed = value["sealed"]?.stringValue,
              let revision = value["revision"]?.int64Value, let macText = value["mac"]?.stringValue else { return nil }
        self.init(kid: kid, algorithm: alg, state: state, createdMillis: created, sealed: sealed)
        activatedMillis = value["activated_ms"]?.int64Value
        deactivatedMillis = value["deactivated_ms"]?.int64Value
        retireAfterMillis = value["retire_after_ms"]?.int64Value
        self.revision = revision
        guard mac.verify(macText, macFields) else { return nil }
    }

    /// For the admin API (never the key material).
    var summary: JSONValue {
        [
            "kid": .string(kid), "alg": .string(algorithm.rawValue), "state": .string(state.rawValue),
            "created_at_ms": .integer(createdMillis),
            "activated_at_ms": activatedMillis.map(JSONValue.integer) ?? .null,
            "deactivated_at_ms": deactivatedMillis.map(JSONValue.integer) ?? .null,
            "retire_after_ms": retireAfterMillis.map(JSONValue.integer) ?? .null,
        ]
    }
}
