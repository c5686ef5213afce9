import Crypto
import Foundation
import Hummingbird
import PortcullisCluster
import PortcullisJOSE
import PortcullisRedis

/// Login-page sessions and remembered consent in Redis, so any control plane serves any step of
/// a sign-in. A visitor who has not signed in gets an anonymous session that is nothing in Redis:
/// its id is random with the time it was made, and its CSRF token (which every form must echo)
/// is a MAC of the id under a key derived from the cluster secret, so any control plane checks
/// it and showing a sign-in form writes nothing to Redis (a failed sign-in still counts in
/// `LoginThrottle`). Control planes' clocks must agree within a minute: the form's age is read
/// from its id. Signing in replaces it with a
/// session in Redis (a new cookie value: an id planted before sign-in is worthless after it).
/// Only hashes of session ids are stored. The operator console keeps its sessions here too,
/// under their own `namespace`, so a cookie of one can never name a session of the other.
struct LoginSessionStore: Sendable {
    struct Session: Sendable {
        var id: String
        var csrfToken: String
        /// The signed-in user, nil before sign-in.
        var username: String?
        var authTime: Int64?
    }

    let client: RedisClient
    let keys: ClusterKeys
    /// Signs anonymous sessions' CSRF tokens (`formMAC(secret:cluster:)`).
    let formMAC: ClusterMAC
    /// Signs signed-in sessions and remembered consent (`RecordMAC`).
    let recordMAC: ClusterMAC
    /// Put before the hashed id in the key (`""` for end users, `console:` for the console).
    var namespace = ""
    /// The instant (Unix milliseconds) before which a user's consent to a client counts for
    /// nothing: the grant cut-off the user's **Revoke access** wrote to the signed revocation
    /// list, which a Redis writer can neither delete nor roll back — so a consent record written
    /// back after it stays void. `Int64.max` while the list has not synced (every consent is
    /// asked again); nil when there is none.
    var consentFloor: @Sendable (_ username: String, _ clientID: String) -> Int64? = { _, _ in nil }
    /// Lifetime of a signed-in session.
    static let signedInTTL: Duration = .seconds(3600)
    /// How long the form of an anonymous session is accepted.
    static let anonymousTTL: Duration = .seconds(600)

    /// The MAC of anonymous sessions: under a key of its own, derived from the cluster secret, so
    /// that the CSRF tokens any visitor is shown are MACs under no key the cluster signs its
    /// records with.
    static func formMAC(secret: [UInt8], cluster: String) -> ClusterMAC {
        let derived = HMAC<SHA256>.authenticationCode(for: Array("portcullis login form key".utf8), using: SymmetricKey(data: secret))
        return ClusterMAC(secret: Array(derived), cluster: cluster)
    }

    /// A new anonymous session: nothing is written anywhere.
    func anonymous(now: Date = Date()) -> Session {
        let id = RefreshTokenStore.newToken() + "." + String(Int64(now.timeIntervalSince1970))
        return Session(id: id, csrfToken: formMAC.sign(["form1", namespace, id]), username: nil, authTime: nil)
    }

    /// The anonymous session `id` names, when it is of the shape `anonymous` makes (32 random
    /// bytes in base64url, a dot, the second it was made) and younger than `anonymousTTL`.
    func anonymousSession(_ id: String, now: Date = Date()) -> Session? {
        let parts = id.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[1].utf8.count <= 12, Base64URL.decode(String(parts[0]))?.count == 32,
              let made = Int64(parts[1]) else { return nil }
        let age = Int64(now.timeIntervalSince1970) - made
        guard age >= -60, age <= Self.anonymousTTL.components.seconds else { return nil }
        return Session(id: id, csrfToken: formMAC.sign(["form1", namespace, id]), username: nil, authTime: nil)
    }

    /// A new signed-in session, in Redis for `signedInTTL`.
    func create(username: String, authTime: Int64) async throws -> Session {
        let session = Session(id: RefreshTokenStore.newToken(), csrfToken: RefreshTokenStore.newToken(), username: username, authTime: authTime)
        let name = sessionKey(session.id)
        let key = RedisArgument(name)
        let fields: [RedisArgument] = ["HSET", key, "csrf", RedisArgument(session.csrfToken), "user", RedisArgument(username),
                                       "auth_time", RedisArgument(authTime),
                                       "mac", RedisArgument(recordMAC.sign(["session1", name, session.csrfToken, username, String(authTime)]))]
        let replies = try await client.pipeline([fields, ["PEXPIRE", key, RedisArgument(Self.signedInTTL.wholeMilliseconds)]])
        for reply in replies { _ = try reply.get() }
        return session
    }

    private func sessionKey(_ id: String) -> String {
        keys.loginSession(namespace + Hex.sha256(id))
    }

    /// The value of the cookie `name` in the request's `Cookie` headers (ids are at most 64
    /// characters; anything longer is no session of ours). Nil when the name comes more than
    /// once: a page of the same site can plant a cookie of that name for a more specific path
    /// or a parent domain, which the browser sends first, and taking either one could sign the
    /// user in as the planter (login CSRF).
    static func cookie(_ name: String, in headers: HTTPFields) -> String? {
        var found: String?
        for header in headers[values: .cookie] {
            for item in header.split(separator: ";") {
                let pair = item.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
                guard pair.count == 2, pair[0] == name else { continue }
                guard found == nil else { return nil }
                found = String(pair[1])
            }
        }
        guard let found, found.count <= 64 else { return nil }
        return found
    }

    /// The session `id` names: anonymous (checked here, nothing read) or signed in (read from
    /// Redis; nil unless its record verifies, `RecordMAC`, and it is younger than
    /// `signedInTTL`). The age is read from the signed sign-in time as well as kept by Redis's
    /// expiry: a Redis writer can lift an expiry (`PERSIST`) or write a deleted record back,
    /// not make a session younger.
    func lookup(_ id: String, now: Date = Date()) async throws -> Session? {
        if id.contains(".") { return anonymousSession(id, now: now) }
        let name = sessionKey(id)
        let fields = try await client.send("HMGET", RedisArgument(name), "csrf", "user", "auth_time", "mac").array ?? []
        guard fields.count == 4, let csrf = fields[0].string, let username = fields[1].string, let authText = fields[2].string,
              let authTime = Int64(authText), let mac = fields[3].string,
              recordMAC.verify(mac, ["session1", name, csrf, username, authText]) else { return nil }
        let age = Int64(now.timeIntervalSince1970) - authTime
        guard age >= -60, age <= Self.signedInTTL.components.seconds else { return nil }
        return Session(id: id, csrfToken: csrf, username: username, authTime: authTime)
    }

    func delete(_ id: String) async throws {
        if id.contains(".") { return }
        _ = try await client.send("DEL", RedisArgument(sessionKey(id)))
    }

    /// The scopes `username` has consented to for `clientID`; nil when never asked (or the
    /// record does not verify, or was given before the user revoked the client's access).
    func consentedScopes(username: String, clientID: String) async throws -> Set<String>? {
        guard let text = try await client.send("HGET", RedisArgument(keys.consent(username)), RedisArgument(clientID)).string else { return nil }
        return consentScopes(text, username: username, clientID: clientID).map(Set.init)
    }

    /// Every client `username` has consented to, with the scopes (records that do not verify, or
    /// given before the user revoked that client's access, left out).
    func consents(username: String) async throws -> [(clientID: String, scopes: [String])] {
        let flat = try await client.send("HGETALL", RedisArgument(keys.consent(username))).array ?? []
        var result: [(clientID: String, scopes: [String])] = []
        var index = 0
        while index + 1 < flat.count {
            if let id = flat[index].string, let scopes = consentScopes(flat[index + 1].string ?? "", username: username, clientID: id) {
                result.append((id, scopes))
            }
            index += 2
        }
        return result.sorted { $0.clientID < $1.clientID }
    }

    /// A consent's stored value: its MAC, the Unix milliseconds it was given, then the scopes,
    /// separated by spaces. The time is under the MAC, so a consent cannot be made younger than
    /// a grant cut-off (`consentFloor`).
    private func consentValue(_ scopes: [String], username: String, clientID: String, givenAtMillis: Int64) -> String {
        let text = scopes.joined(separator: " ")
        let given = String(givenAtMillis)
        return recordMAC.sign(["consent2", keys.consent(username), clientID, given, text]) + " " + given + " " + text
    }

    /// The scopes of a stored consent that verifies and was given after the consent floor. A
    /// record without a time (`consent1`, written before consents had one) counts as given at 0.
    private func consentScopes(_ value: String, username: String, clientID: String) -> [String]? {
        let key = keys.consent(username)
        let parts = value.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        var givenAtMillis: Int64 = 0
        let text: String
        if parts.count >= 2, let given = Int64(parts[1]), recordMAC.verify(parts[0], ["consent2", key, clientID, parts[1], parts.count == 3 ? parts[2] : ""]) {
            givenAtMillis = given
            text = parts.count == 3 ? parts[2] : ""
        } else {
            let legacy = value.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
            text = legacy.count == 2 ? String(legacy[1]) : ""
            guard recordMAC.verify(String(legacy.first ?? ""), ["consent1", key, clientID, text]) else { return nil }
        }
        if let floor = consentFloor(username, clientID), givenAtMillis < floor { return nil }
        return text.split(separator: " ").map(String.init)
    }

    private func grantsKey(username: String, clientID: String) -> RedisArgument {
        RedisArgument(keys.consentGrants(Hex.sha256(username + "\n" + clientID)))
    }

    /// Records a refresh-token family issued under `username`'s consent to `clientID`, so that
    /// revoking the consent marks it revoked and revokes its session. The list is not signed: the
    /// families it names are checked against their own signed records before anything is done.
    /// (`jti:` members written by builds before are ignored and expire with the list.)
    func recordFamily(_ family: String, username: String, clientID: String, ttl: Duration) async throws {
        let key = grantsKey(username: username, clientID: clientID)
        let expiry = RedisArgument(Int64(Date().timeIntervalSince1970) + ttl.components.seconds)
        let replies = try await client.pipeline([["ZADD", key, expiry, RedisArgument("fam:" + family)], ["PEXPIRE", key, RedisArgument(ttl.wholeMilliseconds)]])
        for reply in replies { _ = try reply.get() }
    }

    /// The refresh-token families issued under `username`'s consent to `clientID`. Read, not
    /// taken: they are forgotten (`forgetConsent`) only once marked revoked, so that a revocation
    /// cut short (Redis refusing a write) finds them again when tried again.
    func familiesUnderConsent(username: String, clientID: String) async throws -> [String] {
        Self.families(try await client.send("ZRANGE", grantsKey(username: username, clientID: clientID), "0", "-1").array ?? [])
    }

    /// KEYS: consent hash, grants. ARGV: client_id, then the families marked revoked. Forgets the
    /// consent and those families; returns the families left (issued meanwhile).
    static let forgetScript = RedisScript("""
    redis.call('HDEL', KEYS[1], ARGV[1])
    for i = 2, #ARGV do redis.call('ZREM', KEYS[2], ARGV[i]) end
    return redis.call('ZRANGE', KEYS[2], 0, -1)
    """)

    /// Forgets `username`'s consent to `clientID` and the families `revoked` from what was issued
    /// under it; returns the families issued under it meanwhile (a code redeemed while the
    /// consent was being revoked), which the caller marks in turn.
    func forgetConsent(username: String, clientID: String, revoked: [String]) async throws -> [String] {
        let members = try await client.evalScript(Self.forgetScript, keys: [RedisArgument(keys.consent(username)), grantsKey(username: username, clientID: clientID)],
                                                  arguments: [RedisArgument(clientID)] + revoked.map { RedisArgument("fam:" + $0) }).array ?? []
        return Self.families(members)
    }

    /// The `fam:` members (the `jti:` members builds before this wrote are left to expire).
    private static func families(_ members: [RedisValue]) -> [String] {
        members.compactMap { $0.string }.filter { $0.hasPrefix("fam:") }.map { String($0.dropFirst(4)) }.sorted()
    }

    /// Remembers consent to `scopes` (added to what was consented before), given now.
    func recordConsent(username: String, clientID: String, scopes: [String], now: Date = Date()) async throws {
        let all = (try await consentedScopes(username: username, clientID: clientID) ?? []).union(scopes).sorted()
        let value = consentValue(all, username: username, clientID: clientID, givenAtMillis: Int64(now.timeIntervalSince1970 * 1000))
        _ = try await client.send("HSET", RedisArgument(keys.consent(username)), RedisArgument(clientID), RedisArgument(value))
    }
}
