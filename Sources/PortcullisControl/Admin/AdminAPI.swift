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
        router.add(middleware: AdminMiddleware(settings: settings, metrics: metrics, audit: audit,
                                               failureAudit: AuditFailureLimiter()))
        router.get("/healthz") { _, _ in Response.text("ok\n") }
        router.get("/metrics") { [registry = metrics.registry] _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: ResponseBody(byteBuffer: ByteBuffer(bytes: Exposition.render(registry))))
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
