import Foundation
import PortcullisCluster
import PortcullisJOSE
import PortcullisRedis

/// Login-page sessions and remembered consent in Redis, so any control plane serves any step of
/// a sign-in. A session is created on the first visit to the authorization endpoint and carries
/// the CSRF token every form must echo; signing in replaces it with a new session (a new cookie
/// value: an id planted before sign-in is worthless after it). Only hashes of session ids are
/// stored.
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
    /// Lifetime of a signed-in session.
    static let signedInTTL: Duration = .seconds(3600)
    /// Lifetime of a session nobody has signed in to yet (it costs Redis memory per visitor).
    static let anonymousTTL: Duration = .seconds(600)

    /// A new session, signed in when `username` is given.
    func create(username: String? = nil, authTime: Int64? = nil) async throws -> Session {
        let session = Session(id: RefreshTokenStore.newToken(), csrfToken: RefreshTokenStore.newToken(), username: username, authTime: authTime)
        let key = RedisArgument(keys.loginSession(Hex.sha256(session.id)))
        var fields: [RedisArgument] = ["HSET", key, "csrf", RedisArgument(session.csrfToken)]
        if let username, let authTime { fields += ["user", RedisArgument(username), "auth_time", RedisArgument(authTime)] }
        let ttl = username == nil ? Self.anonymousTTL : Self.signedInTTL
        let replies = try await client.pipeline([fields, ["PEXPIRE", key, RedisArgument(ttl.wholeMilliseconds)]])
        for reply in replies { _ = try reply.get() }
        return session
    }

    func lookup(_ id: String) async throws -> Session? {
        let fields = try await client.send("HMGET", RedisArgument(keys.loginSession(Hex.sha256(id))), "csrf", "user", "auth_time").array ?? []
        guard fields.count == 3, let csrf = fields[0].string else { return nil }
        return Session(id: id, csrfToken: csrf, username: fields[1].string, authTime: fields[2].string.flatMap { Int64($0) })
    }

    func delete(_ id: String) async throws {
        _ = try await client.send("DEL", RedisArgument(keys.loginSession(Hex.sha256(id))))
    }

    /// The scopes `username` has consented to for `clientID`; nil when never asked.
    func consentedScopes(username: String, clientID: String) async throws -> Set<String>? {
        guard let text = try await client.send("HGET", RedisArgument(keys.consent(username)), RedisArgument(clientID)).string else { return nil }
        return Set(text.split(separator: " ").map(String.init))
    }

    /// Remembers consent to `scopes` (added to what was consented before).
    func recordConsent(username: String, clientID: String, scopes: [String]) async throws {
        let all = (try await consentedScopes(username: username, clientID: clientID) ?? []).union(scopes).sorted()
        _ = try await client.send("HSET", RedisArgument(keys.consent(username)), RedisArgument(clientID), RedisArgument(all.joined(separator: " ")))
    }
}
