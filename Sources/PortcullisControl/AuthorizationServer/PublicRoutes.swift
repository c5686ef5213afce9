import Hummingbird
import PortcullisJOSE

/// The public listener: the authorization server's endpoints (when configured) and `/healthz`.
enum PublicRoutes {
    /// `certificates`: how the listener verifies client certificates, which decides which of them
    /// count as chaining to `client_ca`.
    static func router(server: AuthorizationServer?,
                       certificates: ControlRequestContext.CertificateVerification) -> Router<ControlRequestContext> {
        let router = Router(context: ControlRequestContext.self)
        router.add(middleware: ErrorMiddleware())
        router.get("/healthz") { _, _ in Response.text("ok\n") }
        guard let server else { return router }
        let base = server.basePath
        // RFC 8414 §3: the well-known segment goes between host and issuer path; OpenID Connect
        // Discovery appends it to the issuer.
        router.get(RouterPath("/.well-known/oauth-authorization-server" + base)) { _, _ in Response.json(server.metadata(openID: false)) }
        router.get(RouterPath(base + "/.well-known/openid-configuration")) { _, _ in Response.json(server.metadata(openID: true)) }
        router.get(RouterPath(base + "/oauth2/jwks")) { _, _ in
            let document: String
            do {
                document = try await server.ring.document()
            } catch {
                // Not a 500: the keys are not ready (the revocation list syncing, Redis away). The
                // reason, which may name Redis's address, is the control plane's log's.
                return Response(status: .serviceUnavailable, headers: [.retryAfter: "1", .contentType: "text/plain; charset=utf-8"],
                                body: ResponseBody(byteBuffer: ByteBuffer(string: "the signing keys are not ready; retry\n")))
            }
            return Response(status: .ok, headers: [.contentType: "application/jwk-set+json", .cacheControl: "max-age=60"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: document)))
        }
        if let endpoint = server.endpoint {
            router.get(RouterPath(base + "/oauth2/authorize")) { request, _ in await endpoint.guarded { try await endpoint.start(request) } }
            router.post(RouterPath(base + "/oauth2/authorize")) { request, context in
                await endpoint.guarded {
                    try await endpoint.login(request, address: context.remoteAddress?.ipAddress ?? context.peer, peer: context.peer)
                }
            }
            router.post(RouterPath(base + "/oauth2/consent")) { request, context in
                await endpoint.guarded { try await endpoint.consent(request, peer: context.peer) }
            }
            router.get(RouterPath(base + "/oauth2/account")) { request, _ in await endpoint.guarded { try await endpoint.account(request) } }
            router.post(RouterPath(base + "/oauth2/account")) { request, context in
                await endpoint.guarded {
                    try await endpoint.accountAction(request, peer: context.peer) { username, clientID in
                        try await server.revokeConsent(username: username, clientID: clientID, peer: context.peer)
                    }
                }
            }
        }
        router.post(RouterPath(base + "/oauth2/token")) { request, context in
            try await server.token(request, peer: context.peer, certificate: await context.clientCertificate(verifiedBy: certificates))
        }
        router.post(RouterPath(base + "/oauth2/revoke")) { request, context in
            try await server.revoke(request, peer: context.peer, certificate: await context.clientCertificate(verifiedBy: certificates))
        }
        router.post(RouterPath(base + "/oauth2/introspect")) { request, context in
            try await server.introspect(request, certificate: await context.clientCertificate(verifiedBy: certificates))
        }
        return router
    }
}
