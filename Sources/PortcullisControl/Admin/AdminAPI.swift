import Foundation
import Hummingbird
import Logging
import PortcullisCluster
import PortcullisJOSE
import PortcullisObservability
import Prometheus

/// The admin listener: REST/JSON under `/v1` (see docs/admin-api.md and docs/openapi.yaml) and
/// `/metrics`.
struct AdminAPI: Sendable {
    let config: ControlConfig
    /// What a reload may change (credentials, `max_wait`, `rate_limits`); `config` is the file
    /// as the node started with it.
    let settings: ReloadableAdminSettings
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
        // One limiter for refused API calls and failed console sign-ins: together they cannot
        // flood the audit stream.
        let failureAudit = AuditFailureLimiter()
        router.add(middleware: AdminMiddleware(settings: settings, metrics: metrics, audit: audit, failureAudit: failureAudit))
        router.get("/healthz") { _, _ in Response.text("ok\n") }
        router.get("/metrics") { [registry = metrics.registry] _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: ResponseBody(byteBuffer: ByteBuffer(bytes: Exposition.render(registry))))
        }
        addRevocationRoutes(router)
        addKeyRoutes(router)
        addClusterRoutes(router)
        OperatorConsole(api: self, failureAudit: failureAudit).addRoutes(router)
        return router
    }

    /// Runs a mutating call and records it in the audit log, whatever its outcome.
    func audited(_ action: String, target: @autoclosure () -> String, context: ControlRequestContext,
                 _ body: () async throws -> (Response, [String: String])) async throws -> Response {
        try await audited(action, target: target(), actor: context.actor, from: context.peer, body)
    }

    /// The same for a caller known by `actor` (the console's signed-in operator).
    func audited<Result>(_ action: String, target: @autoclosure () -> String, actor: String, from peer: String, details extra: [String: String] = [:],
                         _ body: () async throws -> (Result, [String: String])) async throws -> Result {
        do {
            let (result, details) = try await body()
            let status = (result as? Response).map { Int($0.status.code) } ?? 200
            await audit.record(AuditLog.Entry(actor: actor, action: action, target: target(), from: peer,
                                              outcome: "ok", status: status, details: details.merging(extra) { $1 }))
            return result
        } catch let error as APIError {
            await audit.record(AuditLog.Entry(actor: actor, action: action, target: target(), from: peer,
                                              outcome: error.code, status: Int(error.status.code), details: extra.merging(["error": error.message]) { $1 }))
            throw error
        } catch {
            await audit.record(AuditLog.Entry(actor: actor, action: action, target: target(), from: peer,
                                              outcome: "internal_error", status: 500, details: extra.merging(["error": "\(error)"]) { $1 }))
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
