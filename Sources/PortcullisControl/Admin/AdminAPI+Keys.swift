import Foundation
import Hummingbird
import PortcullisCluster
import PortcullisJOSE

/// `/v1/keys`: issuers and their published key sets; refresh; rotation and retirement for the
/// built-in issuer.
extension AdminAPI {
    func addKeyRoutes(_ router: Router<ControlRequestContext>) {
        router.get("/v1/keys") { _, _ in
            let gateways = try await confirmed { try await view.gateways().nodes }
            var items: [JSONValue] = []
            for issuer in fetcher.issuers {
                items.append(try await issuerJSON(name: issuer.name, iss: issuer.issuer, source: Self.source(issuer), gateways: gateways))
            }
            if let server = authorizationServer {
                items.append(try await issuerJSON(name: server.config.name, iss: server.config.issuer, source: ["type": "builtin"], gateways: gateways))
            }
            return Response.json(["issuers": .array(items)])
        }

        router.get("/v1/keys/:issuer") { _, context in
            let name = try context.parameters.require("issuer")
            let gateways = try await confirmed { try await view.gateways().nodes }
            if let issuer = fetcher.issuers.first(where: { $0.name == name }) {
                return Response.json(try await issuerJSON(name: issuer.name, iss: issuer.issuer, source: Self.source(issuer), gateways: gateways))
            }
            if let server = authorizationServer, server.config.name == name {
                return Response.json(try await issuerJSON(name: name, iss: server.config.issuer, source: ["type": "builtin"], gateways: gateways))
            }
            throw Self.unknownIssuer(name)
        }

        router.post("/v1/keys/:issuer/refresh") { _, context in
            let name = try context.parameters.require("issuer")
            return try await audited("keys.refresh", target: name, context: context) {
                if let server = authorizationServer, server.config.name == name {
                    let record = try await confirmed { try await server.ring.publish() }
                    return (Response.json(["issuer": .string(name), "version": .string(record.version), "outcome": "ok"]), ["version": record.version])
                }
                guard let result = await fetcher.forceRefresh(issuerName: name) else { throw Self.unknownIssuer(name) }
                switch result {
                case .published(let record):
                    return (Response.json(["issuer": .string(name), "version": .string(record.version), "outcome": "ok"]), ["version": record.version])
                case .failed(let failure):
                    throw APIError(.badGateway, "fetch_failed", "fetching \(name)'s JWKS failed (\(failure.outcome)): \(failure.message); the cluster keeps the last published set")
                case .throttled:
                    throw APIError(.conflict, "busy", "a fetch of \(name)'s JWKS is already running")
                }
            }
        }

        router.post("/v1/keys/:issuer/rotate") { _, context in
            let name = try context.parameters.require("issuer")
            return try await audited("keys.rotate", target: name, context: context) {
                let server = try builtin(name)
                let result = try await ringCall { try await server.ring.rotate(trigger: "admin") }
                let body: JSONValue = [
                    "issuer": .string(name), "kid": .string(result.newKeyID), "previous_kid": result.previousKeyID.map(JSONValue.string) ?? .null,
                    "version": .string(result.version), "complete": .bool(result.laggards.isEmpty),
                    "laggards": .array(result.laggards.map(JSONValue.string)), "waited_ms": .integer(result.waitedMillis),
                ]
                return (Response.json(body), ["kid": result.newKeyID, "previous_kid": result.previousKeyID ?? "-"])
            }
        }

        router.post("/v1/keys/:issuer/kids/:kid/retire") { _, context in
            let name = try context.parameters.require("issuer")
            let kid = try context.parameters.require("kid")
            return try await audited("keys.retire", target: "\(name):\(kid)", context: context) {
                let server = try builtin(name)
                let retired = try await ringCall { try await server.ring.retire(kid: kid, actor: context.actor) }
                var object = retired.record?.summary.objectValue ?? ["kid": .string(kid)]
                object["state"] = "retired"
                object["revocation_id"] = retired.revocationID.map(JSONValue.string) ?? .null
                object["jwks_published"] = .bool(retired.published)
                var details = ["kid": kid, "revocation_id": retired.revocationID ?? "-", "jwks_published": String(retired.published)]
                if let error = retired.publishError {
                    object["warning"] = .string("the JWKS without the key could not be published (\(error)); every gateway refuses its tokens all the same (its key revocation), and this control plane publishes again within seconds")
                    details["publish_error"] = error
                }
                return (Response.json(.object(object)), details)
            }
        }
    }

    func builtin(_ name: String) throws -> AuthorizationServer {
        if let server = authorizationServer, server.config.name == name { return server }
        if fetcher.issuers.contains(where: { $0.name == name }) {
            throw APIError(.conflict, "not_builtin", "'\(name)' is an external issuer: only the built-in authorization server's keys are rotated and retired here")
        }
        throw Self.unknownIssuer(name)
    }

    func ringCall<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as SigningKeyRing.RingError {
            switch error {
            case .busy: throw APIError(.conflict, "busy", error.description)
            case .unknownKey: throw APIError.notFound(error.description)
            case .activeKey: throw APIError(.conflict, "active_key", error.description)
            case .noActiveKey, .undecryptable, .unreadable, .notSynced: throw APIError(.serviceUnavailable, "unavailable", error.description)
            }
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError.unavailable(error)
        }
    }

    static func unknownIssuer(_ name: String) -> APIError {
        APIError.notFound("no issuer named '\(name)'")
    }

    static func source(_ issuer: IssuerConfig) -> JSONValue {
        switch issuer.keySource {
        case .jwksFile(let path): ["type": "jwks_file", "location": .string(path)]
        case .jwksURI(let url): ["type": "jwks_uri", "location": .string(url)]
        case .discovery(let url): ["type": "discovery_url", "location": .string(url)]
        case .none: ["type": "none"]
        }
    }

    /// An issuer as `/v1/keys` shows it: the published record, this process's fetch history,
    /// which gateways hold the published version and, for the built-in issuer, its signing keys.
    func issuerJSON(name: String, iss: String, source: JSONValue, gateways: [NodeView]) async throws -> JSONValue {
        let record = try await confirmed { try await publisher.record(issuer: iss) }
        let nowMillis = Int64(Date().timeIntervalSince1970 * 1000)
        var object: [String: JSONValue] = [
            "name": .string(name), "issuer": .string(iss), "source": source,
            "version": .null, "kids": [], "fetched_at_ms": .null, "age_seconds": .null, "nodes_current": [],
        ]
        if let record {
            object["version"] = .string(record.version)
            object["kids"] = .array(IssuerKeyFetcher.keyIDs(inJWKS: record.jwks).map(JSONValue.string))
            object["fetched_at_ms"] = .integer(record.fetchedAtMillis)
            object["age_seconds"] = .number(max(0, Double(nowMillis - record.fetchedAtMillis) / 1000))
            object["nodes_current"] = .array(gateways.filter { $0.record.keySetVersions.values.contains(record.version) }.map { .string($0.record.id) })
        }
        if let server = authorizationServer, server.config.name == name {
            let records = try await ringCall { try await server.ring.records() }
            object["signing_keys"] = .array(records.map(\.summary))
            object["active_kid"] = records.first { $0.state == .active }.map { .string($0.kid) } ?? .null
            object["last_fetch"] = .null
            object["errors_total"] = 0
            object["consecutive_errors"] = 0
        } else {
            let status = await fetcher.statusSnapshot()[name]
            if let status, let at = status.lastAttemptMillis {
                object["last_fetch"] = [
                    "at_ms": .integer(at), "outcome": .string(status.lastOutcome ?? "running"),
                    "error": status.lastError.map(JSONValue.string) ?? .null,
                ]
            } else {
                object["last_fetch"] = .null
            }
            object["errors_total"] = .integer(Int64(status?.errorsTotal ?? 0))
            object["consecutive_errors"] = .integer(Int64(status?.consecutiveErrors ?? 0))
        }
        return .object(object)
    }
}
