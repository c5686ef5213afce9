import Hummingbird
import PortcullisJOSE

/// The public listener: the authorization server's endpoints (when configured) and `/healthz`.
enum PublicRoutes {
    static func router(server: AuthorizationServer?) -> Router<ControlRequestContext> {
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
            let document = try await server.ring.document()
            return Response(status: .ok, headers: [.contentType: "application/jwk-set+json", .cacheControl: "max-age=60"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: document)))
        }
        router.post(RouterPath(base + "/oauth2/token")) { request, context in try await server.token(request, peer: context.peer) }
        router.post(RouterPath(base + "/oauth2/revoke")) { request, context in try await server.revoke(request, peer: context.peer) }
        router.post(RouterPath(base + "/oauth2/introspect")) { request, _ in try await server.introspect(request) }
        return router
    }
}

/// Renders every error as the JSON error shape (unknown paths included) instead of an empty body.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = ControlRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return try error.response(from: request, context: context)
        } catch let error as HTTPError {
            let code = error.status == .notFound ? "not_found" : (error.status == .methodNotAllowed ? "method_not_allowed" : "invalid_request")
            let message = error.body ?? (error.status == .notFound ? "no such endpoint: \(request.method) \(request.uri.path)" : error.status.reasonPhrase)
            return try APIError(error.status, code, message).response(from: request, context: context)
        } catch {
            context.logger.error("unhandled error", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            return try APIError(.internalServerError, "internal_error", "internal error").response(from: request, context: context)
        }
    }
}
