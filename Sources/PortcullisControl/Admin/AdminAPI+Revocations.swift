import Foundation
import Hummingbird
import PortcullisCluster
import PortcullisJOSE

/// `/v1/revocations`: create, list, get with propagation status, lift cut-offs.
extension AdminAPI {
    func addRevocationRoutes(_ router: Router<ControlRequestContext>) {
        router.post("/v1/revocations") { request, context in
            var target = "(invalid request)"
            return try await audited("revocation.create", target: target, context: context) {
                let wait = try QueryInput.wait(request, max: settings.current.maxWait)
                let nowMillis = Int64(Date().timeIntervalSince1970 * 1000)
                let input = try await RevocationInput.parse(RequestInput.jsonObject(request), now: nowMillis / 1000, nowMillis: nowMillis,
                                                            maxTokenLifetime: revocations.maxTokenLifetime)
                target = input.auditTarget
                let event = try await confirmed { try await revocations.add(input, actor: context.actor) }
                let familyWarning = await authorizationServer?.sessionRevokedByOperator(event.revocation)
                let warning = [issuerWarning(input.issuer), familyWarning].compactMap { $0 }.joined(separator: "; ")
                let response = try await revocationResponse(event, wait: wait, createdStatus: .created, warning: warning.isEmpty ? nil : warning)
                return (response, ["id": event.revocation.id, "sequence": String(event.sequence)])
            }
        }

        router.post("/v1/revocations/batch") { request, context in
            var target = "(invalid request)"
            return try await audited("revocation.batch", target: target, context: context) {
                let wait = try QueryInput.wait(request, max: settings.current.maxWait)
                let nowMillis = Int64(Date().timeIntervalSince1970 * 1000)
                var body = JSONFields(try await RequestInput.jsonObject(request, maxBytes: Self.maxBatchBodyBytes))
                guard let items = body.raw("revocations")?.arrayValue else {
                    throw APIError.invalid("revocations", "required: an array of revocations, each as POST /v1/revocations takes it")
                }
                try body.finish()
                guard !items.isEmpty, items.count <= Self.maxBatchItems else {
                    throw APIError.invalid("revocations", "expected 1 to \(Self.maxBatchItems) revocations, got \(items.count)")
                }
                var inputs: [RevocationInput] = []
                inputs.reserveCapacity(items.count)
                for (index, item) in items.enumerated() {
                    guard case .object(let members) = item else { throw APIError.invalid("revocations[\(index)]", "expected an object") }
                    do {
                        inputs.append(try RevocationInput.parse(members, now: nowMillis / 1000, nowMillis: nowMillis,
                                                                maxTokenLifetime: revocations.maxTokenLifetime))
                    } catch var error as APIError {
                        error.field = "revocations[\(index)].\(error.field ?? "")"
                        error.message = "revocations[\(index)]: " + error.message
                        throw error
                    }
                }
                target = "\(inputs.count) revocations"
                let events = try await confirmed { try await revocations.addBatch(inputs, actor: context.actor) }
                var familyWarnings: [String] = []
                for event in events {
                    if let warning = await authorizationServer?.sessionRevokedByOperator(event.revocation) { familyWarnings.append(warning) }
                }
                guard let last = events.last else { throw APIError.invalid("revocations", "nothing to write") }
                let propagation = await propagation(of: last, wait: wait)
                let status: HTTPResponse.Status = propagation.accepted(wait: wait) ? .accepted : .created
                let warnings = inputs.enumerated().compactMap { index, input in issuerWarning(input.issuer).map { "revocations[\(index)]: " + $0 } }
                    + familyWarnings
                var object: [String: JSONValue] = [
                    "count": .integer(Int64(inputs.count)),
                    "first_sequence": .integer(events[0].sequence),
                    "last_sequence": .integer(last.sequence),
                    "changes": .array(events.map { event in
                        [
                            "id": .string(event.revocation.id), "sequence": .integer(event.sequence),
                            "kind": .string(event.revocation.kind.rawValue),
                            "revocations": .integer(Int64(event.revocation.kind == .jti ? event.revocation.batch.count + 1 : 1)),
                        ]
                    }),
                    "propagation": propagation.json,
                ]
                if !warnings.isEmpty { object["warnings"] = .array(warnings.map(JSONValue.string)) }
                let response = Response.json(.object(object), status: status)
                return (response, ["count": String(inputs.count), "first_sequence": String(events[0].sequence),
                                   "last_sequence": String(last.sequence)])
            }
        }

        router.get("/v1/revocations") { request, _ in
            let kind = try QueryInput.string(request, "kind").map { text -> Revocation.Kind in
                guard let kind = Revocation.Kind(rawValue: text) else {
                    throw APIError.invalid("kind", "expected one of \(RevocationInput.kinds), got '\(text)'")
                }
                return kind
            }
            let value = QueryInput.string(request, "value")
            let after = try QueryInput.int(request, "after", in: 0...Int64.max, default: 0) ?? 0
            let limit = Int(try QueryInput.int(request, "limit", in: 1...1000, default: 100) ?? 100)
            let events = try await confirmed { try await store.list(kind: kind, value: value, afterSequence: after, limit: limit) }
            var page: [String: JSONValue] = ["items": .array(events.map(RevocationService.json)), "next_after": .null]
            if events.count == limit, let last = events.last { page["next_after"] = .integer(last.sequence) }
            return Response.json(.object(page))
        }

        router.get("/v1/revocations/:id") { request, context in
            let id = try context.parameters.require("id")
            let wait = try QueryInput.wait(request, max: settings.current.maxWait)
            guard let event = try await confirmed({ try await store.get(id: id) }) else {
                throw APIError.notFound("no revocation '\(id)' (unknown, or expired and pruned)")
            }
            return try await revocationResponse(event, wait: wait, createdStatus: .ok, written: false)
        }

        router.delete("/v1/revocations/:id") { request, context in
            let id = try context.parameters.require("id")
            let reason = QueryInput.string(request, "reason")
            return try await audited("revocation.delete", target: id, context: context) {
                let event = try await liftableCutoff(id)
                let lifted = try await confirmed { try await revocations.lift(event, actor: context.actor, reason: reason) }
                return (Response.json(RevocationService.json(lifted)), ["lifted": id, "id": lifted.revocation.id])
            }
        }
    }

    /// The change `id` names, if it is a cut-off that can be lifted: an add of a subject, client
    /// or grant cut-off that this control plane has not seen lifted (a second lift would only
    /// add another entry to the log). - Throws: 404, or 409 `not_deletable` / `already_lifted`.
    func liftableCutoff(_ id: String) async throws -> RevocationEvent {
        guard let event = try await confirmed({ try await store.get(id: id) }) else {
            throw APIError.notFound("no revocation '\(id)'")
        }
        let original = event.revocation
        guard original.operation == .add, original.kind.isCutoff else {
            throw APIError(.conflict, "not_deletable",
                           original.operation == .delete ? "'\(id)' is itself a lift" :
                           "\(original.kind.rawValue) revocations cannot be undone; only subject, client and grant cut-offs can be lifted")
        }
        guard !view.revocationList.set.isLifted(id) else {
            throw APIError(.conflict, "already_lifted", "'\(id)' has been lifted already")
        }
        return event
    }

    /// Most revocations in one batch call, and the largest body it takes (about 200 bytes each).
    static let maxBatchItems = 10_000
    static let maxBatchBodyBytes = 4 * 1024 * 1024

    /// The change and its propagation; with `wait`, after every live gateway applied it (201/200)
    /// or the wait ran out (202, naming the laggards).
    /// A revocation limited to an `iss` that neither the built-in authorization server nor an
    /// issuer whose key set the control plane fetches has revokes nothing those issuers' tokens
    /// carry: most often a typo (`https://id.example/` for `https://id.example`). Said in the
    /// response rather than refused: a gateway may verify that `iss` from a local `jwks_file`,
    /// which the control plane does not see.
    func issuerWarning(_ issuer: String?) -> String? {
        guard let issuer else { return nil }
        let known = fetcher.issuers.map(\.issuer) + (config.authorizationServer.map { [$0.issuer] } ?? [])
        guard !known.contains(where: { $0.utf8.elementsEqual(issuer.utf8) }) else { return nil }
        return "no issuer the control plane knows has iss '\(issuer)' (it knows: \(known.isEmpty ? "none" : known.joined(separator: ", "))); "
            + "only tokens of gateways that verify that iss themselves (jwks_file) are covered"
    }

    /// `written`: the call just wrote `event`, so a failed propagation read does not fail it (a
    /// read-only call fails with 503).
    private func revocationResponse(_ event: RevocationEvent, wait: Duration?, createdStatus: HTTPResponse.Status, warning: String? = nil,
                                    written: Bool = true) async throws -> Response {
        let propagation = await propagation(of: event, wait: wait)
        if !written, case .unknown(let error) = propagation { throw APIError.unavailable(error) }
        guard case .object(var object) = RevocationService.json(event) else { return Response.json(RevocationService.json(event)) }
        object["propagation"] = propagation.json
        if let warning { object["warning"] = .string(warning) }
        let status: HTTPResponse.Status = propagation.accepted(wait: wait) ? .accepted : createdStatus
        return Response.json(.object(object), status: status)
    }

    /// The propagation of `event`, durable by now (waiting up to `wait`), or why it could not be
    /// read. A failed read does not fail the call: the change is in force, so a 503 — "nothing was
    /// changed, retry" — and an audit entry saying so would be false, and a retry would write the
    /// change twice.
    private func propagation(of event: RevocationEvent, wait: Duration?) async -> PropagationRead {
        do {
            if let wait { return .read(try await tracker.wait(event, timeout: wait)) }
            return .read(try await tracker.current(event))
        } catch {
            logger.error("admin API: the change is written, but its propagation could not be read", metadata: [
                "id": "\(event.revocation.id)", "sequence": "\(event.sequence)", "error": "\(error)",
            ])
            return .unknown(error)
        }
    }
}

