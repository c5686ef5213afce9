import Crypto
import Foundation
import PortcullisCluster
import PortcullisJOSE
import PortcullisRedis

/// Refresh tokens and their families in Redis, with rotation and reuse detection.
///
/// A family is one grant and all its rotations. Each refresh token is single-use: refreshing
/// marks it `used` and creates its successor, atomically (one Lua script). Presenting a `used`
/// token again means it leaked (or a client raced itself): the whole family is marked revoked, so
/// every refresh token in it stops working, and the caller revokes the family's access tokens
/// cluster-wide by a signed session revocation (each carries the family as `sid`): no list of
/// them is kept, so none can be emptied. Only hashes of tokens are stored.
struct RefreshTokenStore: Sendable {
    /// A refresh token's stored facts.
    struct Grant: Sendable {
        var family: String
        var clientID: String
        var subject: String
        var scope: [String]
        var audience: String
        var active: Bool
        var familyRevoked: Bool
        /// The grant came from a user's sign-in (authorization code): `subject` is the username,
        /// and each refresh reads the user's current claims.
        var isUser: Bool = false
        var issuedAtMillis: Int64
        var expiresAtMillis: Int64
        /// When the family began (its first token), as its signed record says. A family written
        /// before its start was signed has it from its unsigned `created_ms` (a Redis writer may
        /// move that one; nil if it is not a number).
        var familyCreatedMillis: Int64? = nil
        /// When the user of a user's grant signed in (Unix ms), as its family's record signs it;
        /// nil for a client's own grant and for a family written before it was signed.
        var authMillis: Int64? = nil
        /// When what the grant stands on was issued (Unix ms): the authorization code's issue
        /// for a user's grant, the family's start for a client's own; signed with the family,
        /// nil for one written before it was. Cut-offs are held against these two and not
        /// against the presented token's issue, which a refresh in flight when a cut-off was
        /// written stamps after it.
        var originMillis: Int64? = nil
    }

    enum RotateOutcome: Sendable {
        case rotated(newToken: String, grant: Grant)
        /// A used token came back: the family is now revoked; its session must be revoked.
        case reused(family: String)
        case invalid(String)
    }

    let client: RedisClient
    let keys: ClusterKeys
    let ttl: Duration
    /// Signs each token's record and each family's (`RecordMAC`).
    let recordMAC: ClusterMAC

    private func tokenMAC(key: String, family: String, clientID: String, subject: String, scope: String, audience: String, expiresAtMillis: Int64) -> String {
        recordMAC.sign(Self.tokenMACFields(key: key, family: family, clientID: clientID, subject: subject, scope: scope, audience: audience,
                                           expiresAtMillis: expiresAtMillis))
    }

    /// What a refresh token's record signs: its key and every field a refresh acts on.
    private static func tokenMACFields(key: String, family: String, clientID: String, subject: String, scope: String, audience: String,
                                       expiresAtMillis: Int64) -> [String] {
        ["refresh1", key, family, clientID, subject, scope, audience, String(expiresAtMillis)]
    }

    /// A family's stored fields, as `HMGET` returns them in this order.
    static let familyFieldNames: [RedisArgument] = ["revoked", "user", "client_id", "sub", "mac", "created_ms", "auth_ms", "origin_ms"]

    /// What a family's MAC covers, as stored (`user` is `1` for a user's grant, `auth` empty for a
    /// client's own). The start is signed so that a Redis writer cannot move a family past its
    /// maximum lifetime, the sign-in and the origin so that none can move it past a cut-off; a
    /// family written before they were (`family2`: the start only; `family1`: none) verifies
    /// without them.
    private static func familyFields(key: String, clientID: String, subject: String, user: String, created: String?,
                                     auth: String? = nil, origin: String? = nil) -> [String] {
        guard let created else { return ["family1", key, clientID, subject, user] }
        guard let origin else { return ["family2", key, clientID, subject, user, created] }
        return ["family3", key, clientID, subject, user, created, auth ?? "", origin]
    }

    /// A family's times, as far as its MAC covers them.
    struct FamilyTimes: Sendable {
        /// `created_ms`: signed (`family2`, `family3`), or as stored for a `family1` record.
        var created: Int64?
        var auth: Int64?
        var origin: Int64?
    }

    /// The family's times that its MAC covers, nil when it does not verify at all. Tried from the
    /// newest form to the oldest.
    private func verifiedTimes(key: String, clientID: String, subject: String, user: String, created: String?, auth: String?,
                               origin: String?, mac: String) -> FamilyTimes? {
        if let created, let createdMillis = Int64(created), let origin, let originMillis = Int64(origin),
           recordMAC.verify(mac, Self.familyFields(key: key, clientID: clientID, subject: subject, user: user, created: created,
                                                   auth: auth ?? "", origin: origin)) {
            return FamilyTimes(created: createdMillis, auth: auth.flatMap { Int64($0) }, origin: originMillis)
        }
        if let created, let millis = Int64(created),
           recordMAC.verify(mac, Self.familyFields(key: key, clientID: clientID, subject: subject, user: user, created: created)) {
            return FamilyTimes(created: millis)
        }
        guard recordMAC.verify(mac, Self.familyFields(key: key, clientID: clientID, subject: subject, user: user, created: nil)) else { return nil }
        return FamilyTimes(created: created.flatMap { Int64($0) })
    }

    static func newToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return Base64URL.encode((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    static func hash(_ token: String) -> String { Hex.sha256(token) }

    /// How every family id (and so every `sid` of this server's tokens) begins.
    static let familyPrefix = "fam_"

    private var ttlMillis: Int64 { ttl.wholeMilliseconds }

    /// When `grant`'s token was issued, from its signed expiry (`iat_ms` is not signed): its
    /// expiry less the lifetime configured now — earlier than the truth if `refresh_token_ttl`
    /// grew since (a cut-off reaches further), later by as much as it shrank (a token issued that
    /// much before a cut-off passes it).
    func signedIssuedAtMillis(_ grant: Grant) -> Int64 {
        grant.expiresAtMillis - ttlMillis
    }

    /// What a cut-off is held against for `grant`: a subject cut-off against the user's sign-in
    /// (a client's own grant: its start), a client or grant cut-off against the grant's origin —
    /// each no later than the token's own issue. A family written before these were signed has
    /// the token's issue only.
    func cutOffTimes(_ grant: Grant) -> (subject: Int64, client: Int64) {
        let issued = signedIssuedAtMillis(grant)
        return (min(issued, grant.authMillis ?? grant.originMillis ?? issued), min(issued, grant.originMillis ?? issued))
    }

    /// Starts a family with its first refresh token.
    /// - Parameters:
    ///   - authMillis: a user's grant: when the user signed in.
    ///   - originMillis: a user's grant: when its authorization code was issued (now for a client's own).
    func startFamily(clientID: String, subject: String, scope: [String], audience: String,
                     user: Bool = false, authMillis: Int64? = nil, originMillis: Int64? = nil) async throws -> (token: String, family: String) {
        let token = Self.newToken()
        let family = Self.familyPrefix + Hex.encode((0..<12).map { _ in UInt8.random(in: 0...255) })
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let ttl = RedisArgument(ttlMillis)
        let familyKey = keys.refreshFamily(family), tokenKey = keys.refreshToken(Self.hash(token))
        let scopeText = scope.joined(separator: " ")
        let auth = authMillis.map(String.init) ?? "", origin = String(min(originMillis ?? now, now))
        let familyMAC = recordMAC.sign(Self.familyFields(key: familyKey, clientID: clientID, subject: subject, user: user ? "1" : "0",
                                                         created: String(now), auth: auth, origin: origin))
        let replies = try await client.pipeline([
            ["HSET", RedisArgument(familyKey), "client_id", RedisArgument(clientID), "sub", RedisArgument(subject),
             "created_ms", RedisArgument(now), "auth_ms", RedisArgument(auth), "origin_ms", RedisArgument(origin), "revoked", "0",
             "user", user ? "1" : "0", "mac", RedisArgument(familyMAC)],
            ["PEXPIRE", RedisArgument(familyKey), ttl],
            ["HSET", RedisArgument(tokenKey), "family", RedisArgument(family), "client_id", RedisArgument(clientID),
             "sub", RedisArgument(subject), "scope", RedisArgument(scopeText), "aud", RedisArgument(audience),
             "status", "active", "iat_ms", RedisArgument(now), "exp_ms", RedisArgument(now + ttlMillis),
             "mac", RedisArgument(tokenMAC(key: tokenKey, family: family, clientID: clientID, subject: subject, scope: scopeText, audience: audience,
                                           expiresAtMillis: now + ttlMillis))],
            ["PEXPIRE", RedisArgument(keys.refreshToken(Self.hash(token))), ttl],
        ])
        for reply in replies { _ = try reply.get() }
        return (token, family)
    }

    /// What is stored about `token`, or nil when it is unknown (or expired out of Redis), or its
    /// record or its family's does not verify (`RecordMAC`).
    func lookup(_ token: String) async throws -> Grant? {
        let tokenKey = keys.refreshToken(Self.hash(token))
        let fields = try await client.send("HMGET", RedisArgument(tokenKey),
                                           "family", "client_id", "sub", "scope", "aud", "status", "iat_ms", "exp_ms", "mac").array ?? []
        guard fields.count == 9, let family = fields[0].string, let clientID = fields[1].string, let subject = fields[2].string,
              let status = fields[5].string, let expires = fields[7].string.flatMap({ Int64($0) }), let mac = fields[8].string else { return nil }
        let scope = fields[3].string ?? "", audience = fields[4].string ?? ""
        guard recordMAC.verify(mac, Self.tokenMACFields(key: tokenKey, family: family, clientID: clientID, subject: subject, scope: scope,
                                                        audience: audience, expiresAtMillis: expires)) else { return nil }
        let familyKey = keys.refreshFamily(family)
        let familyFields = try await client.send(["HMGET", RedisArgument(familyKey)] + Self.familyFieldNames).array ?? []
        guard familyFields.count == Self.familyFieldNames.count, let familyMAC = familyFields[4].string,
              familyFields[2].string == clientID, familyFields[3].string == subject,
              let times = verifiedTimes(key: familyKey, clientID: clientID, subject: subject, user: familyFields[1].string ?? "",
                                        created: familyFields[5].string, auth: familyFields[6].string, origin: familyFields[7].string,
                                        mac: familyMAC) else { return nil }
        let revoked = familyFields[0].string
        return Grant(family: family, clientID: clientID, subject: subject,
                     scope: scope.split(separator: " ").map(String.init), audience: audience,
                     active: status == "active", familyRevoked: revoked != "0", isUser: familyFields[1].string == "1",
                     issuedAtMillis: fields[6].int ?? fields[6].string.flatMap { Int64($0) } ?? 0, expiresAtMillis: expires,
                     familyCreatedMillis: times.created, authMillis: times.auth, originMillis: times.origin)
    }

    /// Whether `family` is a grant of `subject`'s (a user's) to `clientID`, by its signed record:
    /// false for one that does not verify, belongs to someone else, or has expired out of Redis.
    func familyBelongs(_ family: String, to subject: String, clientID: String) async throws -> Bool {
        let familyKey = keys.refreshFamily(family)
        let fields = try await client.send(["HMGET", RedisArgument(familyKey)] + Self.familyFieldNames).array ?? []
        guard fields.count == Self.familyFieldNames.count, fields[2].string == clientID, fields[3].string == subject, fields[1].string == "1",
              let mac = fields[4].string else { return false }
        return verifiedTimes(key: familyKey, clientID: clientID, subject: subject, user: "1", created: fields[5].string,
                             auth: fields[6].string, origin: fields[7].string, mac: mac) != nil
    }

    /// KEYS: token, family, new token. ARGV: now_ms, client_id, family, new token expiry ms, ttl
    /// ms, the new token's MAC, subject, scope, audience — the successor is written from the grant
    /// `lookup` verified, which its MAC signs.
    static let rotateScript = RedisScript("""
    local rec = redis.call('HMGET', KEYS[1], 'status', 'family', 'client_id', 'exp_ms', 'sub', 'scope', 'aud')
    if not rec[1] then return {'invalid', 'unknown refresh token'} end
    if rec[2] ~= ARGV[3] then return {'invalid', 'unknown refresh token'} end
    if rec[3] ~= ARGV[2] then return {'invalid', 'refresh token was issued to another client'} end
    if tonumber(rec[4]) <= tonumber(ARGV[1]) then return {'invalid', 'refresh token expired'} end
    local revoked = redis.call('HGET', KEYS[2], 'revoked')
    if not revoked then return {'invalid', 'refresh token family expired'} end
    if revoked ~= '0' then
      -- Revoked for a reuse whose session revocation was not yet written (that write failed):
      -- the used token presented again writes it.
      if rec[1] ~= 'active' and redis.call('HGET', KEYS[2], 'revoked_reason') == 'reuse' and not redis.call('HGET', KEYS[2], 'reuse_revoked') then
        return {'reuse'}
      end
      return {'invalid', 'refresh token revoked'}
    end
    if rec[1] ~= 'active' then
      redis.call('HSET', KEYS[2], 'revoked', '1', 'revoked_reason', 'reuse', 'revoked_ms', ARGV[1])
      return {'reuse'}
    end
    redis.call('HSET', KEYS[1], 'status', 'used', 'used_ms', ARGV[1])
    redis.call('HSET', KEYS[3], 'family', ARGV[3], 'client_id', ARGV[2], 'sub', ARGV[7], 'scope', ARGV[8], 'aud', ARGV[9],
      'status', 'active', 'iat_ms', ARGV[1], 'exp_ms', ARGV[4], 'mac', ARGV[6])
    redis.call('PEXPIRE', KEYS[3], ARGV[5])
    redis.call('PEXPIRE', KEYS[2], ARGV[5])
    return {'ok'}
    """)

    /// Uses `token` once: on success returns its successor.
    func rotate(_ token: String, clientID: String, grant: Grant) async throws -> RotateOutcome {
        let successor = Self.newToken()
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let successorKey = keys.refreshToken(Self.hash(successor))
        let mac = tokenMAC(key: successorKey, family: grant.family, clientID: grant.clientID, subject: grant.subject,
                           scope: grant.scope.joined(separator: " "), audience: grant.audience, expiresAtMillis: now + ttlMillis)
        let reply = try await client.evalScript(Self.rotateScript, keys: [
            RedisArgument(keys.refreshToken(Self.hash(token))), RedisArgument(keys.refreshFamily(grant.family)), RedisArgument(successorKey),
        ], arguments: [
            RedisArgument(now), RedisArgument(clientID), RedisArgument(grant.family), RedisArgument(now + ttlMillis),
            RedisArgument(ttlMillis), RedisArgument(mac),
            RedisArgument(grant.subject), RedisArgument(grant.scope.joined(separator: " ")), RedisArgument(grant.audience),
        ])
        let parts = reply.array ?? []
        switch parts.first?.string {
        case "ok":
            var next = grant
            next.issuedAtMillis = now
            next.expiresAtMillis = now + ttlMillis
            return .rotated(newToken: successor, grant: next)
        case "reuse":
            return .reused(family: grant.family)
        default:
            return .invalid(parts.count > 1 ? parts[1].string ?? "invalid refresh token" : "invalid refresh token")
        }
    }

    /// The session of a family revoked for a reuse is revoked: presenting the used token again no
    /// longer revokes it again (until this is recorded, it does, so that a revocation Redis
    /// refused is made when the token comes back).
    func reuseRevoked(_ family: String) async throws {
        _ = try await client.evalScript(Self.reuseRevokedScript, keys: [RedisArgument(keys.refreshFamily(family))], arguments: [])
    }

    /// KEYS: family. Marks it, if it is still there (a family expired meanwhile is not made again
    /// without its expiry).
    static let reuseRevokedScript = RedisScript("""
    if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'reuse_revoked', '1') end
    return 0
    """)

    /// KEYS: family. ARGV: now_ms, reason. Marks it, if it is still there (an expired family is not made again).
    static let revokeFamilyScript = RedisScript("""
    if redis.call('HGET', KEYS[1], 'revoked') then
      redis.call('HSET', KEYS[1], 'revoked', '1', 'revoked_reason', ARGV[2], 'revoked_ms', ARGV[1])
    end
    return 0
    """)

    /// Marks a family revoked, so that none of its refresh tokens refreshes (the caller revokes its
    /// session, which the signed list holds while the family's access tokens live).
    func revokeFamily(_ family: String, reason: String) async throws {
        _ = try await client.evalScript(Self.revokeFamilyScript, keys: [RedisArgument(keys.refreshFamily(family))],
                                        arguments: [RedisArgument(Int64(Date().timeIntervalSince1970 * 1000)), RedisArgument(reason)])
    }
}
