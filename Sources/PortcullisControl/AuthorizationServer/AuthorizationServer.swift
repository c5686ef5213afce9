import Foundation
import Hummingbird
import Logging
import PortcullisCluster
import PortcullisJOSE

/// The built-in OAuth 2.0 authorization server: the token endpoint (`client_credentials`,
/// `refresh_token` with rotation and reuse detection), RFC 7009 revocation, RFC 7662
/// introspection, RFC 8414 metadata and the JWKS. Access tokens are RFC 9068 JWTs (`at+jwt`)
/// signed with the active key of the `SigningKeyRing`.
final class AuthorizationServer: Sendable {
    let config: AuthorizationServerConfig
    let ring: SigningKeyRing
    private let clients: ClientAuthenticator
    private let refreshTokens: RefreshTokenStore
    /// Authorization codes, and the login and consent pages; nil without a users file.
    private let codes: AuthorizationCodeStore
    let endpoint: AuthorizationEndpoint?
    private let revocations: RevocationService
    /// The control plane's copy of the revocation list (the same never-forgetting set gateways
    /// hold, synced from the signed log), so introspection and gateways agree.
    private let revocationList: RevocationFollower
    /// Verifies tokens presented for revocation (RFC 7009), with the issuer's leeway.
    private let verifier: JWTVerifier
    /// Verifies tokens presented for introspection: no leeway for `exp` and `nbf`.
    private let introspectionVerifier: JWTVerifier
    /// Counts each client's RFC 7009 revocations (`revocations_per_client`).
    private let throttle: LoginThrottle
    private let audit: AuditLog
    /// Entries of reused codes and refresh tokens, per client and network the call came from
    /// (`reuseAuditKey`): a client — a signed-in user of a public one — can cause them at will,
    /// and keyed by client alone one user would keep the others' reuses out of the stream.
    private let reuseAudit = AuditActorLimiter()

    /// A reuse entry's bucket: the client and the caller's network (an IPv4 address, an IPv6 /64).
    private static func reuseAuditKey(client: String, peer: String) -> String {
        let host: Substring
        if peer.hasPrefix("["), let close = peer.firstIndex(of: "]") {
            host = peer[peer.index(after: peer.startIndex)..<close]
        } else {
            host = peer.split(separator: ":", maxSplits: 1).first ?? Substring(peer)
        }
        return "oauth:" + client + " " + LoginThrottle.counted(String(host))
    }
    private let metrics: ControlMetrics
    private let logger: Logger

    init(config: AuthorizationServerConfig, ring: SigningKeyRing, refreshTokens: RefreshTokenStore, codes: AuthorizationCodeStore,
         endpoint: AuthorizationEndpoint?, revocations: RevocationService,
         revocationList: RevocationFollower, verificationKeys: KeySetStore, throttle: LoginThrottle, audit: AuditLog, metrics: ControlMetrics, logger: Logger) {
        self.config = config
        self.ring = ring
        self.clients = ClientAuthenticator(clients: config.clients)
        self.refreshTokens = refreshTokens
        self.codes = codes
        self.endpoint = endpoint
        self.revocations = revocations
        self.revocationList = revocationList
        self.verifier = JWTVerifier(issuers: [config.issuerConfig], keys: verificationKeys, cache: nil)
        self.introspectionVerifier = JWTVerifier(issuers: [config.introspectionIssuerConfig], keys: verificationKeys, cache: nil)
        self.throttle = throttle
        self.audit = audit
        self.metrics = metrics
        self.logger = logger
    }

    // MARK: Endpoint locations

    /// The path part of the issuer URL ("" for `http://host:port`): endpoints live under it.
    var basePath: String { Self.basePath(issuer: config.issuer) }

    static func basePath(issuer: String) -> String {
        guard let url = URL(string: issuer) else { return "" }
        let path = url.path
        return path == "/" ? "" : path
    }

    var tokenEndpoint: String { config.issuer + "/oauth2/token" }
    var revocationEndpoint: String { config.issuer + "/oauth2/revoke" }
    var introspectionEndpoint: String { config.issuer + "/oauth2/introspect" }
    var jwksURI: String { config.issuer + "/oauth2/jwks" }
    var authorizationEndpoint: String { config.issuer + "/oauth2/authorize" }

    /// RFC 8414 metadata (also served as OpenID Connect discovery).
    func metadata(openID: Bool) -> JSONValue {
        let scopes = Array(Set(config.clients.flatMap(\.scopes))).sorted()
        var object: [String: JSONValue] = [
            "issuer": .string(config.issuer),
            "token_endpoint": .string(tokenEndpoint),
            "jwks_uri": .string(jwksURI),
            "revocation_endpoint": .string(revocationEndpoint),
            "introspection_endpoint": .string(introspectionEndpoint),
            "grant_types_supported": .array(AuthorizationServerConfig.supportedGrantTypes.filter { $0 != "authorization_code" || endpoint != nil }
                .map(JSONValue.string)),
            "response_types_supported": endpoint == nil ? [] : ["code"],
            "token_endpoint_auth_methods_supported": Self.authMethods,
            "tls_client_certificate_bound_access_tokens": true,
            "revocation_endpoint_auth_methods_supported": Self.authMethods,
            "introspection_endpoint_auth_methods_supported": Self.authMethods,
            "scopes_supported": .array(scopes.map(JSONValue.string)),
            "access_token_signing_alg_values_supported": [.string(config.algorithm.rawValue)],
        ]
        if endpoint != nil {
            object["authorization_endpoint"] = .string(authorizationEndpoint)
            object["code_challenge_methods_supported"] = ["S256"]
            object["response_modes_supported"] = ["query"]
            object["authorization_response_iss_parameter_supported"] = true
            object["token_endpoint_auth_methods_supported"] = .array((Self.authMethods.arrayValue ?? []) + ["none"])
        }
        if openID {
            object["subject_types_supported"] = ["public"]
            object["id_token_signing_alg_values_supported"] = [.string(config.algorithm.rawValue)]
        }
        return .object(object)
    }

    /// How clients authenticate, at the token, revocation and introspection endpoints alike
    /// (`ClientAuthenticator`).
    static let authMethods: JSONValue = ["client_secret_basic", "client_secret_post", "tls_client_auth", "self_signed_tls_client_auth"]

    // MARK: Token endpoint (RFC 6749 §4.4, §6)

    func token(_ request: Request, peer: String, certificate: ClientAuthenticator.PresentedCertificate? = nil) async throws -> Response {
        var grantType = "-"
        do {
            let form = try await RequestInput.form(request)
            let (client, boundTo) = try clients.authenticate(authorization: request.headers[.authorization], form: form, certificate: certificate)
            guard let type = form["grant_type"], !type.isEmpty else { throw APIError(.badRequest, "invalid_request", "grant_type is required") }
            grantType = AuthorizationServerConfig.supportedGrantTypes.contains(type) ? type : "other"
            guard AuthorizationServerConfig.supportedGrantTypes.contains(type) else {
                throw APIError(.badRequest, "unsupported_grant_type", "grant_type '\(type)' is not supported (\(AuthorizationServerConfig.supportedGrantTypes.joined(separator: ", ")))")
            }
            guard client.grantTypes.contains(type) else {
                throw APIError(.badRequest, "unauthorized_client", "client '\(client.id)' may not use grant_type \(type)")
            }
            let signer = try await unavailableOnFailure { try await ring.activeSigner() }
            let response: Response
            if type == "client_credentials" {
                response = try await clientCredentials(client: client, form: form, signer: signer, boundTo: boundTo)
            } else if type == "authorization_code" {
                response = try await authorizationCode(client: client, form: form, signer: signer, peer: peer, boundTo: boundTo)
            } else {
                response = try await refresh(client: client, form: form, signer: signer, peer: peer, boundTo: boundTo)
            }
            metrics.tokenRequest(grantType: grantType, outcome: "issued")
            return response
        } catch let error as APIError {
            metrics.tokenRequest(grantType: grantType, outcome: error.code)
            throw Self.noStore(error)
        }
    }

    private func clientCredentials(client: AuthorizationServerConfig.Client, form: [String: String], signer: JWTSigner,
                                   boundTo: ClientAuthenticator.PresentedCertificate?) async throws -> Response {
        let scopes = try Self.scopes(requested: form["scope"], allowed: client.scopes)
        let access = newAccessToken()
        var started: (token: String, family: String)?
        if client.grantTypes.contains("refresh_token") {
            started = try await unavailableOnFailure {
                try await refreshTokens.startFamily(clientID: client.id, subject: client.id, scope: scopes, audience: client.audience)
            }
        }
        let jwt = try sign(signer, jti: access.jti, exp: access.exp, subject: client.id, clientID: client.id, audience: client.audience, scopes: scopes,
                           session: started?.family, boundTo: boundTo)
        let refreshToken = started?.token
        return tokenResponse(jwt, scopes: scopes, refreshToken: refreshToken)
    }

    private func refresh(client: AuthorizationServerConfig.Client, form: [String: String], signer: JWTSigner, peer: String,
                         boundTo: ClientAuthenticator.PresentedCertificate?) async throws -> Response {
        guard let presented = form["refresh_token"], !presented.isEmpty else {
            throw APIError(.badRequest, "invalid_request", "refresh_token is required")
        }
        // A grant not from a user's sign-in is the client's own (client_credentials).
        guard let grant = try await unavailableOnFailure({ try await refreshTokens.lookup(presented) }), ExactMatch.equal(grant.clientID, client.id),
              grant.isUser || ExactMatch.equal(grant.subject, client.id) else {
            throw APIError(.badRequest, "invalid_grant", "unknown, expired or foreign refresh token")
        }
        // However often it is refreshed, a grant ends at its maximum lifetime: the user signs in
        // again (the family's start is signed, so a Redis writer cannot move it). A used token
        // presented again goes on to `rotate`, whose reuse detection revokes the family.
        if grant.active, let lifetime = config.refreshTokenMaxLifetime, let created = grant.familyCreatedMillis,
           Self.grantEnded(createdMillis: created, lifetime: lifetime, nowMillis: Int64(Date().timeIntervalSince1970 * 1000)) {
            throw APIError(.badRequest, "invalid_grant", "the grant reached its maximum lifetime (refresh_token_max_lifetime): sign in again")
        }
        // A subject or client cut-off revokes the tokens issued before it — "log out everywhere" —
        // and so the grants too: one whose user signed in (or whose code was issued) before it
        // refreshes nothing, whenever its latest token was issued. Held against the token's issue,
        // a refresh in flight while the cut-off is written would hand out a successor stamped
        // after it, and the family would live on.
        let since = refreshTokens.cutOffTimes(grant)
        try refuseIfCutOff(subject: grant.subject, clientID: client.id, subjectSince: since.subject, clientSince: since.client, what: "grant of this refresh token")
        // A family revoked (reuse, RFC 7009) is in the signed list while its access tokens live,
        // whatever its unsigned `revoked` field in Redis says.
        guard !revocationList.set.isSessionRevoked(issuer: config.issuer, sid: grant.family) else {
            throw APIError(.badRequest, "invalid_grant", "refresh token revoked")
        }
        // A user's grant refreshes only while the user's consent to the client covers it: "Revoke
        // access" ends the family even where the list of what was issued under the consent (not
        // signed) was emptied by a Redis writer and the family itself was never revoked.
        if grant.isUser {
            let consented = try await unavailableOnFailure {
                try await endpoint?.sessions.consentedScopes(username: grant.subject, clientID: client.id)
            }
            guard let consented, Set(grant.scope).isSubset(of: consented) else {
                throw APIError(.badRequest, "invalid_grant", "the user revoked this client's access")
            }
        }
        // RFC 6749 §6: the new scope may narrow, never widen, the original grant — nor go past
        // what the client may ask for now.
        let scopes = try Self.scopes(requested: form["scope"], allowed: grant.scope.filter { ExactMatch.contains(client.scopes, $0) })
        let access = newAccessToken()
        let outcome = try await unavailableOnFailure {
            try await refreshTokens.rotate(presented, clientID: client.id, grant: grant)
        }
        switch outcome {
        case .rotated(let successor, let next):
            var extra: [String: JSONValue] = [:]
            if next.isUser {
                // The user's claims as they are now; a user removed from the file refreshes no more.
                guard let user = config.users?.users[next.subject] else {
                    throw APIError(.badRequest, "invalid_grant", "the user of this grant no longer exists")
                }
                extra = user.claims
                // The sign-in the grant began with, as the first token said (RFC 9068 §2.2.1).
                if let auth = next.authMillis { extra["auth_time"] = .integer(auth / 1000) }
            }
            let jwt = try sign(signer, jti: access.jti, exp: access.exp, subject: next.subject, clientID: client.id, audience: client.audience, scopes: scopes,
                               session: next.family, boundTo: boundTo, extra: extra)
            return tokenResponse(jwt, scopes: scopes, refreshToken: successor)
        case .reused(let family):
            metrics.refreshTokenReuse.increment()
            logger.warning("refresh token reused: revoking its family and every access token issued in it",
                           metadata: ["client_id": "\(client.id)", "family": "\(family)"])
            // The rotate script marked the family revoked (for a reuse, which it re-reports until recorded).
            let events = try await endFamilies([family], actor: "oauth:" + client.id, reason: "refresh token reuse in \(family)", mark: false)
            try await unavailableOnFailure { try await refreshTokens.reuseRevoked(family) }
            await reuseAudit.record(AuditLog.Entry(actor: "oauth:" + client.id, action: "oauth.refresh_reuse", target: family, from: peer,
                                                   outcome: "family_revoked", status: 400, details: ["revocation": Self.ids(events)]),
                                    key: Self.reuseAuditKey(client: client.id, peer: peer), in: audit, suppressed: metrics.auditSuppressed)
            throw APIError(.badRequest, "invalid_grant", "refresh token already used: the whole token family has been revoked")
        case .invalid(let reason):
            throw APIError(.badRequest, "invalid_grant", reason)
        }
    }

    /// Whether a grant that began at `createdMillis` has outlived `lifetime` at `nowMillis`. A
    /// start in the future (an unsigned one a Redis writer set, on a family written before starts
    /// were signed) counts as now; no value overflows.
    static func grantEnded(createdMillis: Int64, lifetime: Duration, nowMillis: Int64) -> Bool {
        let (age, overflow) = nowMillis.subtractingReportingOverflow(min(createdMillis, nowMillis))
        return overflow || age >= lifetime.wholeMilliseconds
    }

    /// `invalid_grant` when a subject or client cut-off in force is later than `issuedAtMillis`,
    /// or, given both, the grant cut-off the user's **Revoke access** wrote for this client.
    /// Until the control plane's copy of the revocation list has synced it knows no cut-off:
    /// `temporarily_unavailable` (503), as for introspection.
    private func refuseIfCutOff(subject: String?, clientID: String?, issuedAtMillis: Int64, what: String) throws {
        try refuseIfCutOff(subject: subject, clientID: clientID, subjectSince: issuedAtMillis, clientSince: issuedAtMillis, what: what)
    }

    /// The same, a subject cut-off held against `subjectSince` and a client or grant cut-off
    /// against `clientSince`.
    private func refuseIfCutOff(subject: String?, clientID: String?, subjectSince: Int64, clientSince: Int64, what: String) throws {
        try requireSynced()
        if let predates = cutOff(subject: subject, clientID: clientID, subjectSince: subjectSince, clientSince: clientSince) {
            throw APIError(.badRequest, "invalid_grant", "the \(what) predates \(predates)")
        }
    }

    /// `temporarily_unavailable` (503) until the control plane's copy of the revocation list has synced.
    private func requireSynced() throws {
        guard revocationList.isSynced else {
            var failure = APIError(.serviceUnavailable, "temporarily_unavailable", "the revocation list is not synced yet; retry")
            failure.headers[.retryAfter] = "1"
            throw failure
        }
    }

    /// Which cut-off in force is later than its time (`refuseIfCutOff`), nil when none is.
    private func cutOff(subject: String?, clientID: String?, subjectSince: Int64, clientSince: Int64) -> String? {
        let cutoffs = revocationList.set.cutoffs(issuer: config.issuer, subject: subject, clientID: clientID)
        if let cutoff = cutoffs.subject, subjectSince < cutoff { return "a revocation of every token of its subject" }
        if let cutoff = cutoffs.client, clientSince < cutoff { return "a revocation of every token of its client" }
        if let cutoff = cutoffs.grant, clientSince < cutoff { return "the user's revocation of this client's access" }
        return nil
    }

    // MARK: Authorization code (RFC 6749 §4.1.3, RFC 7636 §4.5)

    private func authorizationCode(client: AuthorizationServerConfig.Client, form: [String: String], signer: JWTSigner, peer: String,
                                   boundTo: ClientAuthenticator.PresentedCertificate?) async throws -> Response {
        guard let code = form["code"], !code.isEmpty else { throw APIError(.badRequest, "invalid_request", "code is required") }
        guard let redirectURI = form["redirect_uri"], !redirectURI.isEmpty else {
            throw APIError(.badRequest, "invalid_request", "redirect_uri is required (the one of the authorization request)")
        }
        guard let verifier = form["code_verifier"], !verifier.isEmpty else {
            throw APIError(.badRequest, "invalid_request", "code_verifier is required (PKCE, RFC 7636)")
        }
        let outcome = try await unavailableOnFailure { try await codes.redeem(code) }
        let grant: AuthorizationCodeStore.Grant
        switch outcome {
        case .unknown:
            throw APIError(.badRequest, "invalid_grant", "unknown or expired authorization code")
        case .reused(let owner, let family, let accessToken):
            // Only the client the code was issued to sets off the revocation: another client
            // holding a leaked code must not be able to revoke someone else's tokens with it.
            guard owner == client.id else { throw APIError(.badRequest, "invalid_grant", "unknown or expired authorization code") }
            try await revokeIssuedFromCode(family: family, accessToken: accessToken, client: client.id, peer: peer)
            throw APIError(.badRequest, "invalid_grant", "authorization code already used: the tokens issued from it have been revoked")
        case .redeemed(var redeemed):
            // What the client may ask for now, whatever the code says.
            redeemed.scope = redeemed.scope.filter { ExactMatch.contains(client.scopes, $0) }
            grant = redeemed
        }
        // The code is spent whatever follows: a wrong verifier or redirect URI does not leave it
        // for another try.
        guard ExactMatch.equal(grant.clientID, client.id) else { throw APIError(.badRequest, "invalid_grant", "the authorization code was issued to another client") }
        guard ExactMatch.equal(grant.redirectURI, redirectURI) else {
            throw APIError(.badRequest, "invalid_grant", "redirect_uri differs from the one of the authorization request")
        }
        guard PKCE.verifierIsWellFormed(verifier), PasswordHash.constantTimeEqual(Array(PKCE.challenge(verifier).utf8), Array(grant.challenge.utf8)) else {
            throw APIError(.badRequest, "invalid_grant", "code_verifier does not match the code_challenge (PKCE S256)")
        }
        guard let user = config.users?.users[grant.username] else {
            throw APIError(.badRequest, "invalid_grant", "the user of this authorization code no longer exists")
        }
        // A code of a sign-in older than a cut-off of its user mints nothing, nor a code issued
        // before a cut-off of its client or of this user's grant to it (one issued since, from an
        // older sign-in, does).
        try refuseIfCutOff(subject: grant.username, clientID: nil, issuedAtMillis: grant.authTime * 1000, what: "sign-in behind this authorization code")
        try refuseIfCutOff(subject: grant.username, clientID: client.id, issuedAtMillis: grant.issuedAtMillis ?? 0, what: "authorization code")
        // Every code was issued under a consent the user gave: one they revoked since ("Revoke
        // access" while the code was unredeemed), or narrowed below the code's scopes, redeems
        // nothing. (Revoking only what was issued would leave such a code to mint tokens the
        // account page no longer lists.)
        let consented = try await unavailableOnFailure {
            try await endpoint?.sessions.consentedScopes(username: user.username, clientID: client.id)
        }
        guard let consented, Set(grant.scope).isSubset(of: consented) else {
            throw APIError(.badRequest, "invalid_grant", "the user revoked this client's access after the code was issued")
        }
        let access = newAccessToken()
        var refreshToken: String?
        var family: String?
        if client.grantTypes.contains("refresh_token") {
            // The family keeps the sign-in and the code's issue, so that a cut-off written while
            // this redemption was under way still ends it at its first refresh.
            let started = try await unavailableOnFailure {
                try await refreshTokens.startFamily(clientID: client.id, subject: user.username, scope: grant.scope, audience: client.audience,
                                                    user: true, authMillis: grant.authTime * 1000, originMillis: grant.issuedAtMillis)
            }
            refreshToken = started.token
            family = started.family
        }
        let jwt = try sign(signer, jti: access.jti, exp: access.exp, subject: user.username, clientID: client.id, audience: client.audience,
                           scopes: grant.scope, session: family, boundTo: boundTo,
                           extra: user.claims.merging(["auth_time": .integer(grant.authTime)]) { $1 })
        let reusedMeanwhile = try await unavailableOnFailure { try await codes.attach(code, family: family, accessToken: access) }
        try await unavailableOnFailure {
            if let family { try await endpoint?.sessions.recordFamily(family, username: user.username, clientID: client.id, ttl: config.refreshTokenTTL) }
        }
        if reusedMeanwhile {
            try await revokeIssuedFromCode(family: family, accessToken: access, client: client.id, peer: peer)
            throw APIError(.badRequest, "invalid_grant", "authorization code already used: the tokens issued from it have been revoked")
        }
        // The user may have pressed Revoke access while this was issued: its cut-off does not
        // reach a token stamped in the second after it, and its list of families could not
        // name one recorded after it read the list. Asked again now, after recording: if the
        // consent is gone, what was just issued is revoked here, by what this node knows itself.
        let stillConsented = try await unavailableOnFailure {
            try await endpoint?.sessions.consentedScopes(username: user.username, clientID: client.id)
        }
        guard let stillConsented, Set(grant.scope).isSubset(of: stillConsented) else {
            if let family {
                _ = try await endFamilies([family], actor: "user:" + user.username, reason: "consent to \(client.id) revoked during redemption")
            } else {
                await appliedHere(try await unavailableOnFailure {
                    try await revocations.revokeTokens([access], actor: "user:" + user.username, reason: "consent to \(client.id) revoked during redemption")
                })
            }
            throw APIError(.badRequest, "invalid_grant", "the user revoked this client's access while the code was redeemed")
        }
        return tokenResponse(jwt, scopes: grant.scope, refreshToken: refreshToken)
    }

    /// The user revoked their consent to `clientID`: every token issued under it goes, cluster-wide.
    func revokeConsent(username: String, clientID: String, peer: String) async throws {
        guard let endpoint else { return }
        // Without its copy of the list synced this control plane knows neither the consent's
        // floor nor the grant cut-off in force: try again in a moment.
        try requireSynced()
        // A grant cut-off: every token of this user for this client issued until now is refused
        // on every node, and every refresh token, code and remembered consent from before it is
        // void here — whatever record a Redis writer puts back or takes away (the signed list
        // never forgets), so it is written whatever Redis says was consented or issued, and no
        // token is revoked by jti from an unsigned list (which a writer could stuff with other
        // users' jtis). It supersedes (lifts) the user's own earlier grant cut-offs for the
        // client, which it covers — never an operator's, nor one later than itself — so that
        // those and their lifts are pruned after `max_token_lifetime` and the list keeps about one
        // per user and client; presses are throttled (`LoginThrottle`). Applied here before
        // anything else is done, so no refresh on this control plane slips between the write and
        // its own copy.
        let actor = "user:" + username
        let nowMillis = Int64(Date().timeIntervalSince1970 * 1000)
        let superseded = revocationList.set.grantCutoffIDs(issuer: config.issuer, subject: username, client: clientID, actor: actor,
                                                          notAfterMillis: nowMillis)
        let written = try await unavailableOnFailure {
            try await revocations.addGrant(subject: username, client: clientID, issuer: config.issuer, nowMillis: nowMillis,
                                           superseding: superseded, actor: actor, reason: "consent to \(clientID) revoked")
        }
        await appliedHere(written)
        // Then the refresh-token families the list names — those whose signed record is this
        // user's grant to this client, so a Redis writer who adds others to the list gets nothing
        // — are marked revoked and their sessions revoked: a refresh that passed its checks
        // before the cut-off was applied here and signs after its second would otherwise carry
        // an `iat` the cut-off does not reach, and no rotation follows the mark, so every token
        // of the family carries its `sid`. Then the consent is forgotten. Revoked first,
        // forgotten last: a step Redis refuses fails the call (503) and leaves what it names for
        // the next try. A family a code redeemed meanwhile added is revoked in turn (and the
        // redemption itself asks for the consent again once it has recorded what it issued).
        var families = try await unavailableOnFailure { try await endpoint.sessions.familiesUnderConsent(username: username, clientID: clientID) }
        var revoked = written
        for _ in 0..<3 {
            var owned: [String] = []
            for family in families {
                if try await unavailableOnFailure({ try await refreshTokens.familyBelongs(family, to: username, clientID: clientID) }) { owned.append(family) }
            }
            revoked += try await endFamilies(owned, actor: actor, reason: "consent to \(clientID) revoked")
            let marked = families
            families = try await unavailableOnFailure { try await endpoint.sessions.forgetConsent(username: username, clientID: clientID, revoked: marked) }
            if families.isEmpty { break }
        }
        await audit.record(AuditLog.Entry(actor: "user:" + username, action: "oauth.consent_revoke", target: "client:" + clientID, from: peer,
                                          outcome: "ok", status: 200, details: ["revocations": Self.ids(revoked)]))
    }

    /// RFC 6749 §4.1.2: a code used twice revokes every token issued from it: the refresh-token
    /// family's session (every access token refreshed from it too), else the one access token.
    private func revokeIssuedFromCode(family: String?, accessToken: (jti: String, exp: Int64)?, client: String, peer: String) async throws {
        metrics.authorizationCodeReuse.increment()
        // Revoked already by an earlier reuse: nothing more to write or audit, so a code presented
        // again and again (a used code is kept for the refresh-token lifetime) does not grow the
        // signed list and the audit stream.
        if revocationList.isSynced {
            if let family, revocationList.set.isSessionRevoked(issuer: config.issuer, sid: family) { return }
            if family == nil, let accessToken, revocationList.set.isTokenRevoked(jti: accessToken.jti) { return }
        }
        logger.warning("authorization code reused: revoking the tokens issued from it", metadata: ["client_id": "\(client)"])
        var revoked: [RevocationEvent] = []
        if let family {
            revoked = try await endFamilies([family], actor: "oauth:" + client, reason: "authorization code reuse")
        } else if let accessToken {
            revoked = try await unavailableOnFailure {
                try await revocations.revokeTokens([accessToken], actor: "oauth:" + client, reason: "authorization code reuse")
            }
        }
        await reuseAudit.record(AuditLog.Entry(actor: "oauth:" + client, action: "oauth.code_reuse", target: family.map { "family:" + $0 } ?? "code",
                                               from: peer, outcome: "tokens_revoked", status: 400, details: ["revocation": Self.ids(revoked)]),
                                key: Self.reuseAuditKey(client: client, peer: peer), in: audit, suppressed: metrics.auditSuppressed)
    }

    /// An operator's session revocation (admin API) of this issuer's — or every issuer's — `sid`:
    /// when it names a refresh-token family here, the family is marked revoked too, so it
    /// refreshes no more once the revocation has ended. Returns a warning for the answer when
    /// Redis refused the mark (the revocation itself is written and in force).
    func sessionRevokedByOperator(_ revocation: Revocation) async -> String? {
        guard revocation.kind == .session, revocation.value.hasPrefix(RefreshTokenStore.familyPrefix),
              revocation.issuer == nil || revocation.issuer == config.issuer else { return nil }
        do {
            try await refreshTokens.revokeFamily(revocation.value, reason: "session revoked by \(revocation.actor)")
            return nil
        } catch {
            logger.warning("a session revocation was written, but its refresh-token family could not be marked revoked",
                           metadata: ["sid": "\(revocation.value)", "error": "\(error)"])
            return "the refresh-token family \(revocation.value) could not be marked revoked (\(error)): it refreshes again once this revocation ends; "
                + "revoke it again, or write a grant or subject cut-off"
        }
    }

    /// Ends refresh-token families: each is marked revoked in Redis (unless `mark` is false: the
    /// caller's script already did), then every access token issued in them (their `sid`) is
    /// revoked on every gateway by session revocations written in one atomic batch, for as long
    /// as any of those tokens can live — `access_token_ttl` from now (after a lowering of that
    /// setting, a token issued before under the longer one may outlive it by the difference) —
    /// and applied here before returning, so that the families refresh no more on this control
    /// plane whatever their unsigned records in Redis say. Nothing is written for none.
    private func endFamilies(_ families: [String], actor: String, reason: String, mark: Bool = true) async throws -> [RevocationEvent] {
        if mark {
            for family in families { try await unavailableOnFailure { try await refreshTokens.revokeFamily(family, reason: reason) } }
        }
        let until = Int64(Date().timeIntervalSince1970) + 1 + config.accessTokenTTL.components.seconds
        let inputs = families.map { RevocationInput(kind: .session, value: $0, issuer: config.issuer, until: until, reason: reason) }
        let events = try await unavailableOnFailure { try await revocations.addBatch(inputs, actor: actor) }
        await appliedHere(events)
        return events
    }

    /// Revocation ids for an audit entry's details.
    private static func ids(_ events: [RevocationEvent]) -> String {
        events.map(\.revocation.id).joined(separator: " ")
    }

    // MARK: Revocation endpoint (RFC 7009)

    func revoke(_ request: Request, peer: String, certificate: ClientAuthenticator.PresentedCertificate? = nil) async throws -> Response {
        do {
            let form = try await RequestInput.form(request)
            let client = try clients.authenticate(authorization: request.headers[.authorization], form: form, certificate: certificate).client
            guard let token = form["token"], !token.isEmpty else { throw APIError(.badRequest, "invalid_request", "token is required") }
            let refreshFirst = form["token_type_hint"] == "refresh_token"
            for kind in refreshFirst ? ["refresh", "access"] : ["access", "refresh"] {
                if kind == "access", case .success(let verified) = verifier.verify(token) {
                    guard verified.clientID.map({ ExactMatch.equal($0, client.id) }) == true else {
                        throw APIError(.badRequest, "unauthorized_client", "the token was issued to another client")
                    }
                    guard let jti = verified.jwtID else { break }
                    try await countRevocation(by: client.id, subject: verified.subject ?? client.id)
                    // Revoked already (the same token sent again): nothing more to write, so a
                    // client repeating the call does not grow the signed list.
                    if revocationList.isSynced, revocationList.set.isTokenRevoked(jti: jti) {
                        await audit.record(AuditLog.Entry(actor: "oauth:" + client.id, action: "oauth.revoke", target: "jti:" + jti, from: peer,
                                                          outcome: "already_revoked", status: 200))
                        return Self.emptyOK()
                    }
                    let event = try await unavailableOnFailure {
                        try await revocations.add(kind: .jti, value: jti, issuer: nil, until: verified.expiresAt,
                                                  actor: "oauth:" + client.id, reason: "RFC 7009 revocation")
                    }
                    await audit.record(AuditLog.Entry(actor: "oauth:" + client.id, action: "oauth.revoke", target: "jti:" + jti, from: peer,
                                                      outcome: "ok", status: 200, details: ["revocation": event.revocation.id]))
                    await appliedHere([event])
                    return Self.emptyOK()
                }
                if kind == "refresh", let grant = try await unavailableOnFailure({ try await refreshTokens.lookup(token) }) {
                    guard ExactMatch.equal(grant.clientID, client.id) else {
                        throw APIError(.badRequest, "unauthorized_client", "the token was issued to another client")
                    }
                    try await countRevocation(by: client.id, subject: grant.subject)
                    // Revoked already (the same token sent again): nothing more to write, so a
                    // client repeating the call does not grow the signed list.
                    if grant.familyRevoked, revocationList.isSynced, revocationList.set.isSessionRevoked(issuer: config.issuer, sid: grant.family) {
                        await audit.record(AuditLog.Entry(actor: "oauth:" + client.id, action: "oauth.revoke", target: "family:" + grant.family,
                                                          from: peer, outcome: "already_revoked", status: 200))
                        return Self.emptyOK()
                    }
                    // RFC 7009 §2.1: access tokens of the same grant go too.
                    let events = try await endFamilies([grant.family], actor: "oauth:" + client.id, reason: "RFC 7009 revocation of \(grant.family)")
                    await audit.record(AuditLog.Entry(actor: "oauth:" + client.id, action: "oauth.revoke", target: "family:" + grant.family,
                                                      from: peer, outcome: "ok", status: 200, details: ["revocation": Self.ids(events)]))
                    return Self.emptyOK()
                }
            }
            // RFC 7009 §2.2: an invalid or unknown token is not an error.
            return Self.emptyOK()
        } catch let error as APIError {
            throw Self.noStore(error)
        }
    }

    /// Counts an RFC 7009 revocation that found a token of `clientID`'s for `subject`, before
    /// anything is written or audited; over `revocations_per_client` a minute for that client and
    /// subject it is refused with 503 and `Retry-After` (RFC 7009 §2.2.1: the client keeps the
    /// token and retries later).
    private func countRevocation(by clientID: String, subject: String) async throws {
        guard let wait = try await unavailableOnFailure({
            try await throttle.attempt(revokingForClient: clientID, subject: subject, limit: config.revocationsPerClient)
        }) else {
            return
        }
        metrics.tokenRevocationThrottled.increment()
        var failure = APIError(.serviceUnavailable, "temporarily_unavailable",
                               "client '\(clientID)' made more than \(config.revocationsPerClient) revocations for one subject in a minute; retry later")
        failure.headers[.retryAfter] = String(max(1, wait.components.seconds))
        throw failure
    }

    // MARK: Introspection endpoint (RFC 7662)

    /// A client learns about tokens issued to itself only, unless it is a resource server
    /// configured with `introspect_any` (RFC 7662 §2.1: the server decides what a caller may
    /// introspect). Any other token gets exactly the answer an unknown token gets, before anything
    /// else is looked at, so the answer reveals nothing about it.
    func introspect(_ request: Request, certificate: ClientAuthenticator.PresentedCertificate? = nil) async throws -> Response {
        do {
            let form = try await RequestInput.form(request)
            let client = try clients.authenticate(authorization: request.headers[.authorization], form: form, certificate: certificate).client
            guard let token = form["token"], !token.isEmpty else { throw APIError(.badRequest, "invalid_request", "token is required") }
            func mayIntrospect(_ owner: String?) -> Bool { client.introspectAny || owner == client.id }
            if form["token_type_hint"] != "refresh_token", case .success(let verified) = introspectionVerifier.verify(token) {
                guard mayIntrospect(verified.clientID) else { return Self.inactive() }
                try requireSynced()
                let revoked = revocationList.set.check(verified) != .allowed
                if !revoked {
                    var object: [String: JSONValue] = [
                        "active": true, "token_type": "Bearer", "iss": .string(verified.issuer), "exp": .integer(verified.expiresAt),
                        "aud": .array(verified.audiences.map(JSONValue.string)), "scope": .string(verified.scopes.joined(separator: " ")),
                    ]
                    if let subject = verified.subject { object["sub"] = .string(subject) }
                    if let client = verified.clientID { object["client_id"] = .string(client) }
                    if let jti = verified.jwtID { object["jti"] = .string(jti) }
                    if let sid = verified.sessionID { object["sid"] = .string(sid) }
                    if let iat = verified.issuedAt { object["iat"] = .integer(iat) }
                    return Response.json(.object(object))
                }
                return Self.inactive()
            }
            // A refresh token is active only if it would refresh: neither its family's session
            // nor a cut-off later than its issue is in force (whatever its record says), and its
            // grant has not reached its maximum lifetime.
            let nowMillis = Int64(Date().timeIntervalSince1970 * 1000)
            if let grant = try await unavailableOnFailure({ try await refreshTokens.lookup(token) }), mayIntrospect(grant.clientID),
               grant.active, !grant.familyRevoked, grant.expiresAtMillis > nowMillis,
               !(config.refreshTokenMaxLifetime.map { lifetime in
                   grant.familyCreatedMillis.map { Self.grantEnded(createdMillis: $0, lifetime: lifetime, nowMillis: nowMillis) } ?? false
               } ?? false) {
                try requireSynced()
                let since = refreshTokens.cutOffTimes(grant)
                guard !revocationList.set.isSessionRevoked(issuer: config.issuer, sid: grant.family),
                      cutOff(subject: grant.subject, clientID: grant.clientID, subjectSince: since.subject, clientSince: since.client) == nil else {
                    return Self.inactive()
                }
                return Response.json([
                    "active": true, "token_type": "refresh_token", "iss": .string(config.issuer), "client_id": .string(grant.clientID),
                    "sub": .string(grant.subject), "scope": .string(grant.scope.joined(separator: " ")), "aud": .string(grant.audience),
                    "iat": .integer(grant.issuedAtMillis / 1000), "exp": .integer(grant.expiresAtMillis / 1000),
                ])
            }
            return Self.inactive()
        } catch let error as APIError {
            throw Self.noStore(error)
        }
    }

    /// Waits (up to a second) until this node's copy of the revocations holds `events`, so that
    /// introspection here answers inactive once the revocation's 200 is sent; the revocation is
    /// durable either way, and a copy that lags longer only delays the answer.
    private func appliedHere(_ events: [RevocationEvent]) async {
        guard let last = events.max(by: { $0.sequence < $1.sequence }) else { return }
        if !(await revocationList.waitUntilApplied(last.epoch, sequence: last.sequence)) {
            logger.warning("the control plane's revocation copy had not applied a revocation a second after writing it",
                           metadata: ["sequence": "\(last.sequence)"])
        }
    }

    /// RFC 7662 §2.2: the whole answer for a token that is not active, unknown or not the caller's.
    private static func inactive() -> Response {
        Response.json(["active": false])
    }

    // MARK: Helpers

    private func newAccessToken() -> (jti: String, exp: Int64) {
        var generator = SystemRandomNumberGenerator()
        let jti = Base64URL.encode((0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) })
        return (jti, Int64(Date().timeIntervalSince1970) + config.accessTokenTTL.components.seconds)
    }

    /// `boundTo`: the certificate a `tls_client_auth` or `self_signed_tls_client_auth` client
    /// authenticated with; the token then carries its `cnf.x5t#S256` (RFC 8705 §3) and gateways
    /// accept it only over that certificate. `session`: the refresh-token family the token is
    /// issued in, as `sid`, which a session revocation of the family names on every gateway.
    private func sign(_ signer: JWTSigner, jti: String, exp: Int64, subject: String, clientID: String, audience: String, scopes: [String],
                      session: String?, boundTo: ClientAuthenticator.PresentedCertificate? = nil, extra: [String: JSONValue] = [:]) throws -> String {
        let now = Int64(Date().timeIntervalSince1970)
        // The server's own claims win over a user's (the users file may not name them anyway).
        var claims: [String: JSONValue] = extra.merging([
            "iss": .string(config.issuer), "sub": .string(subject), "aud": .string(audience), "client_id": .string(clientID),
            "iat": .integer(now), "exp": .integer(exp), "jti": .string(jti),
        ]) { $1 }
        if !scopes.isEmpty { claims["scope"] = .string(scopes.joined(separator: " ")) }
        if let boundTo { claims["cnf"] = .object(["x5t#S256": .string(Base64URL.encode(boundTo.sha256))]) }
        if let session { claims["sid"] = .string(session) }
        return try signer.sign(claims: .object(claims))
    }

    private func tokenResponse(_ jwt: String, scopes: [String], refreshToken: String?) -> Response {
        var object: [String: JSONValue] = [
            "access_token": .string(jwt), "token_type": "Bearer", "expires_in": .integer(config.accessTokenTTL.components.seconds),
        ]
        if !scopes.isEmpty { object["scope"] = .string(scopes.joined(separator: " ")) }
        if let refreshToken { object["refresh_token"] = .string(refreshToken) }
        var response = Response.json(.object(object))
        response.headers[Self.pragma] = "no-cache"
        return response
    }

    /// `scope` (space-separated) checked against what is allowed; absent means all of it.
    static func scopes(requested: String?, allowed: [String]) throws(APIError) -> [String] {
        guard let requested else { return allowed }
        let asked = requested.split(separator: " ").map(String.init)
        if let extra = asked.first(where: { !ExactMatch.contains(allowed, $0) }) {
            throw APIError(.badRequest, "invalid_scope", "scope '\(extra)' is not granted to this client")
        }
        var unique: [String] = []
        for scope in asked where !unique.contains(scope) { unique.append(scope) }
        return unique
    }

    /// Redis did not answer: RFC 6749 has no code for it; `temporarily_unavailable` with 503
    /// tells clients to retry rather than give up.
    private func unavailableOnFailure<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as APIError {
            throw error
        } catch SigningKeyRing.RingError.noActiveKey {
            // Redis lost the active key's record; `maintain` replaces it within seconds.
            var failure = APIError(.serviceUnavailable, "temporarily_unavailable", "the authorization server has no active signing key yet; retry")
            failure.headers[.retryAfter] = "2"
            throw failure
        } catch let error as SigningKeyRing.RingError {
            // What is wrong is the operator's to read (it may name kids, files or Redis keys).
            logger.warning("authorization server: signing keys unavailable", metadata: ["error": "\(error)"])
            var failure = APIError(.serviceUnavailable, "temporarily_unavailable", "the authorization server's signing keys are not ready; retry")
            failure.headers[.retryAfter] = "1"
            throw failure
        } catch {
            logger.error("authorization server: cluster store failed", metadata: ["error": "\(error)"])
            var failure = APIError(.serviceUnavailable, "temporarily_unavailable", "the authorization server's store is unreachable; retry")
            failure.headers[.retryAfter] = "1"
            throw failure
        }
    }

    private static let pragma = HTTPFields.Element.Name("Pragma")!

    private static func noStore(_ error: APIError) -> APIError {
        var error = error
        error.headers[Self.pragma] = "no-cache"
        error.message = ErrorDescription.sanitized(error.message)
        return error
    }

    private static func emptyOK() -> Response {
        Response(status: .ok, headers: [.cacheControl: "no-store", .contentLength: "0"])
    }
}
