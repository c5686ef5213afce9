import Foundation
import Hummingbird
import Logging
import PortcullisCluster
import PortcullisJOSE
import Prometheus

/// The admin listener: REST/JSON under `/v1` (see docs/admin-api.md and docs/openapi.yaml) and
/// `/metrics`.
struct AdminAPI: Sendable {
    let config: ControlConfig
    let revocations: RevocationService
    let store: RevocationStore
    let tracker: PropagationTracker
    let view: ClusterView
    let audit: AuditLog
    let fetcher: IssuerKeyFetcher
    let publisher: KeySetPublisher
    let authorizationServer: AuthorizationServer?
    let metrics: ControlMetrics
    let logger: Logger

    func router() -> Router<ControlRequestContext> {
        let router = Router(context: ControlRequestContext.self)
        router.add(middleware: AdminMiddleware(authenticator: AdminAuthenticator(credentials: config.adminCredentials), metrics: metrics, audit: audit))
        router.get("/healthz") { _, _ in Response.text("ok\n") }
        router.get("/metrics") { [registry = metrics.registry] _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: ResponseBody(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
        addRevocationRoutes(router)
        addKeyRoutes(router)
        addClusterRoutes(router)
        return router
    }

    /// Runs a mutating call and records it in the audit log, whatever its outcome.
    func audited(_ action: String, target: @autoclosure () -> String, context: ControlRequestContext,
                 _ body: () async throws -> (Response, [String: String])) async throws -> Response {
        do {
            let (response, details) = try await body()
            await audit.record(AuditLog.Entry(actor: context.actor, action: action, target: target(), from: context.peer,
                                              outcome: "ok", status: Int(response.status.code), details: details))
            return response
        } catch let error as APIError {
            await audit.record(AuditLog.Entry(actor: context.actor, action: action, target: target(), from: context.peer,
                                              outcome: error.code, status: Int(error.status.code), details: ["error": error.message]))
            throw error
        } catch {
            await audit.record(AuditLog.Entry(actor: context.actor, action: action, target: target(), from: context.peer,
                                              outcome: "internal_error", status: 500, details: ["error": "\(error)"]))
            throw error
        }
    }

    /// Maps a store failure to 503: nothing is acknowledged that Redis did not confirm.
    func confirmed<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as APIError {
            throw error
        } catch {
            logger.error("admin API: the cluster store failed", metadata: ["error": "\(error)"])
            throw APIError.unavailable(error)
        }
    }
}

/// Query-parameter parsing with 400s that name the parameter.
enum QueryInput {
    static func string(_ request: Request, _ name: String) -> String? {
        request.uri.queryParameters[name[...]].map(String.init)
    }

    static func int(_ request: Request, _ name: String, in range: ClosedRange<Int64>, default value: Int64? = nil) throws -> Int64? {
        guard let text = string(request, name) else { return value }
        guard let number = Int64(text), range.contains(number) else {
            throw APIError.invalid(name, "expected an integer between \(range.lowerBound) and \(range.upperBound), got '\(text)'")
        }
        return number
    }

    /// `wait`: a duration (`5s`, `500ms`, `2` for seconds) up to `max`, or `true` for `max`.
    static func wait(_ request: Request, max: Duration) throws -> Duration? {
        guard let text = string(request, "wait") else { return nil }
        if text == "true" { return max }
        if text == "false" || text == "0" { return nil }
        guard let duration = parseDuration(text) else {
            throw APIError.invalid("wait", "expected a duration such as 5s or 500ms, got '\(text)'")
        }
        guard duration <= max else { throw APIError.invalid("wait", "at most \(max) (max_wait)") }
        return duration
    }

    static func parseDuration(_ text: String) -> Duration? {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            guard let number = Double(text.dropLast(suffix.count)), number.isFinite, number >= 0 else { return nil }
            return .milliseconds(Int64((number * scale * 1000).rounded()))
        }
        guard let number = Double(text), number.isFinite, number >= 0 else { return nil }
        return .milliseconds(Int64((number * 1000).rounded()))
    }
}
