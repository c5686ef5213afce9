import Hummingbird

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
