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
        /// When the code was issued, Unix milliseconds (signed; nil in records of versions that
        /// did not write it, whose codes have expired a minute after an upgrade).
        var issuedAtMillis: Int64? = nil
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
    /// Signs each record and the tokens issued from it (`RecordMAC`).
    let recordMAC: ClusterMAC

    private func key(_ code: String) -> String { keys.authorizationCode(Hex.sha256(code)) }

    private func grantFields(key: String, _ grant: Grant) -> [String] {
        var fields = [grant.issuedAtMillis == nil ? "code1" : "code2", key, grant.clientID, grant.redirectURI, grant.username,
                      grant.scope.joined(separator: " "), grant.challenge, String(grant.authTime)]
        if let issuedAtMillis = grant.issuedAtMillis { fields.append(String(issuedAtMillis)) }
        return fields
    }

    private func issuedMAC(key: String, family: String, jti: String, exp: String) -> String {
        recordMAC.sign(Self.issuedMACFields(key: key, family: family, jti: jti, exp: exp))
    }

    /// What the record of what a code issued signs: the code's key, the family and the access token.
    private static func issuedMACFields(key: String, family: String, jti: String, exp: String) -> [String] {
        ["code-issued1", key, family, jti, exp]
    }

    /// Stores a new code for `grant`; returns the code.
    func issue(_ grant: Grant) async throws -> String {
        var grant = grant
        grant.issuedAtMillis = Int64(Date().timeIntervalSince1970 * 1000)
        let code = RefreshTokenStore.newToken()
        let name = self.key(code)
        let key = RedisArgument(name)
        let replies = try await client.pipeline([
            ["HSET", key, "status", "active", "client_id", RedisArgument(grant.clientID), "redirect_uri", RedisArgument(grant.redirectURI),
             "sub", RedisArgument(grant.username), "scope", RedisArgument(grant.scope.joined(separator: " ")),
             "challenge", RedisArgument(grant.challenge), "auth_time", RedisArgument(grant.authTime),
             "iat_ms", RedisArgument(grant.issuedAtMillis ?? 0), "mac", RedisArgument(recordMAC.sign(grantFields(key: name, grant)))],
            ["PEXPIRE", key, RedisArgument(AuthorizationServerConfig.authorizationCodeTTL.wholeMilliseconds)],
        ])
        for reply in replies { _ = try reply.get() }
        return code
    }

    /// KEYS: code. ARGV: retention ms. Returns the status it found and the record's fields.
    static let redeemScript = RedisScript("""
    local rec = redis.call('HMGET', KEYS[1], 'status', 'client_id', 'redirect_uri', 'sub', 'scope', 'challenge', 'auth_time', 'mac',
      'family', 'jti', 'exp', 'issued_mac', 'iat_ms')
    if not rec[1] then return {'unknown'} end
    local outcome = 'ok'
    if rec[1] ~= 'active' then
      redis.call('HSET', KEYS[1], 'reused', '1')
      outcome = 'reuse'
    else
      redis.call('HSET', KEYS[1], 'status', 'used')
      redis.call('PEXPIRE', KEYS[1], ARGV[1])
    end
    return {outcome, rec[2] or '', rec[3] or '', rec[4] or '', rec[5] or '', rec[6] or '', rec[7] or '', rec[8] or '',
      rec[9] or '', rec[10] or '', rec[11] or '', rec[12] or '', rec[13] or ''}
    """)

    /// Takes the code: the first call gets its grant, every later one `reused`. A record whose
    /// MAC does not verify is `unknown` (a forged record is spent all the same).
    func redeem(_ code: String) async throws -> RedeemOutcome {
        let name = key(code)
        let reply = try await client.evalScript(Self.redeemScript, keys: [RedisArgument(name)],
                                                arguments: [RedisArgument(usedRetention.wholeMilliseconds)])
        let parts = (reply.array ?? []).map { $0.string ?? "" }
        guard parts.count == 13 else { return .unknown }
        let grant = Grant(clientID: parts[1], redirectURI: parts[2], username: parts[3], scope: parts[4].split(separator: " ").map(String.init),
                          challenge: parts[5], authTime: Int64(parts[6]) ?? 0, issuedAtMillis: parts[12].isEmpty ? nil : Int64(parts[12]))
        guard String(grant.authTime) == parts[6], parts[12].isEmpty || grant.issuedAtMillis.map(String.init) == parts[12],
              recordMAC.verify(parts[7], grantFields(key: name, grant)) else {
            return .unknown
        }
        switch parts[0] {
        case "ok":
            return .redeemed(grant)
        case "reuse":
            // What was issued from it, if its record was written by a control plane.
            let (family, jti, exp) = (parts[8], parts[9], parts[10])
            guard !jti.isEmpty, recordMAC.verify(parts[11], Self.issuedMACFields(key: name, family: family, jti: jti, exp: exp)) else {
                return .reused(clientID: grant.clientID, family: nil, accessToken: nil)
            }
            return .reused(clientID: grant.clientID, family: family.isEmpty ? nil : family, accessToken: Int64(exp).map { (jti: jti, exp: $0) })
        default:
            return .unknown
        }
    }

    /// KEYS: code. ARGV: family, jti, exp, their MAC. Returns '1' when the code was reused meanwhile.
    static let attachScript = RedisScript("""
    if redis.call('EXISTS', KEYS[1]) == 0 then return '0' end
    redis.call('HSET', KEYS[1], 'family', ARGV[1], 'jti', ARGV[2], 'exp', ARGV[3], 'issued_mac', ARGV[4])
    return redis.call('HGET', KEYS[1], 'reused') or '0'
    """)

    /// Records the tokens issued from `code`; true when the code was presented again while they
    /// were being issued (the caller then revokes them at once).
    func attach(_ code: String, family: String?, accessToken: (jti: String, exp: Int64)) async throws -> Bool {
        let name = key(code)
        let mac = issuedMAC(key: name, family: family ?? "", jti: accessToken.jti, exp: String(accessToken.exp))
        let reply = try await client.evalScript(Self.attachScript, keys: [RedisArgument(name)],
                                                arguments: [RedisArgument(family ?? ""), RedisArgument(accessToken.jti), RedisArgument(accessToken.exp),
                                                            RedisArgument(mac)])
        return reply.string == "1"
    }
}
