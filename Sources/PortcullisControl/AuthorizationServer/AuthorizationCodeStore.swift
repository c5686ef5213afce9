import Foundation
import PortcullisCluster
import PortcullisJOSE
import PortcullisRedis

/// Authorization codes (RFC 6749 §4.1.2) in Redis, so any control plane can redeem a code
/// another one issued. Only hashes of codes are stored. A code is single-use: redeeming it marks
/// it `used` atomically (one Lua script) and keeps the record, with the tokens issued from it, for
/// the refresh-token lifetime; a code presented again gets `reuse` and those tokens, which the
/// caller revokes (RFC 6749 §4.1.2, RFC 9700 §4.2.4).
struct AuthorizationCodeStore: Sendable {
    /// What a code was issued for.
    struct Grant: Sendable, Equatable {
        var clientID: String
        var redirectURI: String
        var username: String
        var scope: [String]
        /// RFC 7636 `code_challenge` (S256).
        var challenge: String
        var authTime: Int64
    }

    enum RedeemOutcome: Sendable {
        case redeemed(Grant)
        /// The code was used before: revoke what was issued from it (family and/or first access
        /// token) — when `clientID`, the client it was issued to, is the one presenting it again.
        case reused(clientID: String, family: String?, accessToken: (jti: String, exp: Int64)?)
        case unknown
    }

    let client: RedisClient
    let keys: ClusterKeys
    /// How long a used code's record is kept for reuse detection.
    let usedRetention: Duration

    /// Stores a new code for `grant`; returns the code.
    func issue(_ grant: Grant) async throws -> String {
        let code = RefreshTokenStore.newToken()
        let key = RedisArgument(keys.authorizationCode(Hex.sha256(code)))
        let replies = try await client.pipeline([
            ["HSET", key, "status", "active", "client_id", RedisArgument(grant.clientID), "redirect_uri", RedisArgument(grant.redirectURI),
             "sub", RedisArgument(grant.username), "scope", RedisArgument(grant.scope.joined(separator: " ")),
             "challenge", RedisArgument(grant.challenge), "auth_time", RedisArgument(grant.authTime)],
            ["PEXPIRE", key, RedisArgument(AuthorizationServerConfig.authorizationCodeTTL.wholeMilliseconds)],
        ])
        for reply in replies { _ = try reply.get() }
        return code
    }

    /// KEYS: code. ARGV: retention ms.
    static let redeemScript = RedisScript("""
    local rec = redis.call('HMGET', KEYS[1], 'status', 'client_id', 'redirect_uri', 'sub', 'scope', 'challenge', 'auth_time', 'family', 'jti', 'exp')
    if not rec[1] then return {'unknown'} end
    if rec[1] ~= 'active' then
      redis.call('HSET', KEYS[1], 'reused', '1')
      return {'reuse', rec[8] or '', rec[9] or '', rec[10] or '', rec[2] or ''}
    end
    redis.call('HSET', KEYS[1], 'status', 'used')
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    return {'ok', rec[2], rec[3], rec[4], rec[5], rec[6], rec[7]}
    """)

    /// Takes the code: the first call gets its grant, every later one `reused`.
    func redeem(_ code: String) async throws -> RedeemOutcome {
        let reply = try await client.evalScript(Self.redeemScript, keys: [RedisArgument(keys.authorizationCode(Hex.sha256(code)))],
                                                arguments: [RedisArgument(usedRetention.wholeMilliseconds)])
        let parts = (reply.array ?? []).map { $0.string ?? "" }
        switch parts.first {
        case "ok" where parts.count == 7:
            return .redeemed(Grant(clientID: parts[1], redirectURI: parts[2], username: parts[3],
                                   scope: parts[4].split(separator: " ").map(String.init), challenge: parts[5], authTime: Int64(parts[6]) ?? 0))
        case "reuse" where parts.count == 5:
            let access = Int64(parts[3]).map { (jti: parts[2], exp: $0) }
            return .reused(clientID: parts[4], family: parts[1].isEmpty ? nil : parts[1], accessToken: parts[2].isEmpty ? nil : access)
        default:
            return .unknown
        }
    }

    /// KEYS: code. ARGV: family, jti, exp. Returns '1' when the code was reused meanwhile.
    static let attachScript = RedisScript("""
    if redis.call('EXISTS', KEYS[1]) == 0 then return '0' end
    redis.call('HSET', KEYS[1], 'family', ARGV[1], 'jti', ARGV[2], 'exp', ARGV[3])
    return redis.call('HGET', KEYS[1], 'reused') or '0'
    """)

    /// Records the tokens issued from `code`; true when the code was presented again while they
    /// were being issued (the caller then revokes them at once).
    func attach(_ code: String, family: String?, accessToken: (jti: String, exp: Int64)) async throws -> Bool {
        let reply = try await client.evalScript(Self.attachScript, keys: [RedisArgument(keys.authorizationCode(Hex.sha256(code)))],
                                                arguments: [RedisArgument(family ?? ""), RedisArgument(accessToken.jti), RedisArgument(accessToken.exp)])
        return reply.string == "1"
    }
}
