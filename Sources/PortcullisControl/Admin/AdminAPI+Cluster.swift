import Foundation
import Hummingbird
import PortcullisCluster
import PortcullisConfig
import PortcullisJOSE
import PortcullisRedis

/// `/v1/nodes`, `/v1/status`, `/v1/ratelimits`, `/v1/audit`.
extension AdminAPI {
    func addClusterRoutes(_ router: Router<ControlRequestContext>) {
        router.get("/v1/nodes") { _, _ in
            let (sequence, _, nodes) = try await confirmed { try await view.gateways() }
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            return Response.json(["revocation_sequence": .integer(sequence), "nodes": .array(nodes.map { $0.json(nowMillis: now) })])
        }

        router.get("/v1/nodes/:id") { _, context in
            let id = try context.parameters.require("id")
            let nodes = try await confirmed { try await view.gateways().nodes }
            guard let node = nodes.first(where: { $0.record.id == id }) else { throw APIError.notFound("no live gateway node '\(id)'") }
            return Response.json(node.json(nowMillis: Int64(Date().timeIntervalSince1970 * 1000)))
        }

        router.get("/v1/status") { _, _ in
            Response.json(try await confirmed { try await status() })
        }

        router.get("/v1/ratelimits") { request, _ in
            let top = Int(try QueryInput.int(request, "top", in: 1...100, default: 10) ?? 10)
            return Response.json(try await confirmed { try await rateLimits(top: top) })
        }

        router.get("/v1/audit") { request, _ in
            let count = Int(try QueryInput.int(request, "count", in: 1...1000, default: 50) ?? 50)
            return Response.json(["entries": .array(try await confirmed { try await audit.recent(count: count) })])
        }
    }

    private func status() async throws -> JSONValue {
        let (sequence, _, nodes) = try await view.gateways()
        let controls = try await view.controlPlanes()
        let counts = view.revocationCounts()
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        var issuers: [JSONValue] = []
        var names = fetcher.issuers.map { ($0.name, $0.issuer) }
        if let server = authorizationServer { names.append((server.config.name, server.config.issuer)) }
        for (name, iss) in names {
            let record = try await publisher.record(issuer: iss)
            issuers.append([
                "name": .string(name), "version": record.map { .string($0.version) } ?? .null,
                "keys": .integer(Int64(record.map { IssuerKeyFetcher.keyIDs(inJWKS: $0.jwks).count } ?? 0)),
                "age_seconds": record.map { .number(max(0, Double(now - $0.fetchedAtMillis) / 1000)) } ?? .null,
                "nodes_current": .integer(Int64(nodes.filter { node in record.map { node.record.keySetVersions.values.contains($0.version) } ?? false }.count)),
            ])
        }
        let lagging = nodes.filter { $0.lagSequences > 0 }
        var server: JSONValue = .null
        if let authorizationServer {
            let records = try await authorizationServer.ring.records()
            server = [
                "issuer": .string(authorizationServer.config.issuer), "name": .string(authorizationServer.config.name),
                "active_kid": records.first { $0.state == .active }.map { .string($0.kid) } ?? .null,
                "signing_keys": .integer(Int64(records.count)),
            ]
        }
        return [
            "control_plane": [
                "node_id": .string(config.nodeID), "version": .string(PortcullisVersion.current),
                "peers": .array(controls.map { .string($0.id) }),
            ],
            "redis": ["connected": true],
            "revocations": [
                "sequence": .integer(sequence),
                "in_force": .object(counts.mapValues(JSONValue.integer)),
            ],
            "nodes": [
                "live": .integer(Int64(nodes.count)),
                "in_step": .integer(Int64(nodes.count - lagging.count)),
                "lagging": .array(lagging.map { .string($0.record.id) }),
                "max_lag_sequences": .integer(nodes.map(\.lagSequences).max() ?? 0),
                "max_lag_seconds": .number(nodes.compactMap(\.lagSeconds).max() ?? 0),
                "ratelimit_fallback": .array(nodes.filter { $0.record.rateLimitMode == "fallback" }.map { .string($0.record.id) }),
                "redis_disconnected": .array(nodes.filter { !$0.record.redisConnected }.map { .string($0.record.id) }),
            ],
            "issuers": .array(issuers),
            "authorization_server": server,
        ]
    }

    /// Configured policies and the biggest consumers in each policy's current window, read from
    /// the gateways' shared counters (through `RateLimitUsage`, beside their writer).
    private func rateLimits(top: Int) async throws -> JSONValue {
        let usage = RateLimitUsage(client: view.client, keys: view.keys)
        let parsed = try await usage.counters()
        // The gateways' sliding window: the current fixed window plus the previous one weighted
        // by how much of it still overlaps (the same estimate the gateways enforce). Policies not
        // in this control plane's config have an unknown window length: their newest window counts.
        let nowNanos = UInt64(Date().timeIntervalSince1970 * 1e9)
        let policiesInForce = settings.current.rateLimitPolicies
        let configured = Dictionary(uniqueKeysWithValues: policiesInForce.map { ($0.name, $0) })
        var currentWindow: [String: UInt64] = [:]
        var previousWeight: [String: Double] = [:]
        for counter in parsed {
            if let policy = configured[counter.policy] {
                let nanos = max(1, policy.window.wholeNanoseconds)
                currentWindow[counter.policy] = nowNanos / nanos
                previousWeight[counter.policy] = 1 - Double(nowNanos % nanos) / Double(nanos)
            } else {
                currentWindow[counter.policy] = max(currentWindow[counter.policy] ?? 0, counter.window)
                previousWeight[counter.policy] = 0
            }
        }
        let counted = parsed.filter { counter in
            guard let current = currentWindow[counter.policy] else { return false }
            return counter.window == current || (counter.window == current &- 1 && (previousWeight[counter.policy] ?? 0) > 0)
        }
        let values = try await usage.values(counted)
        var estimates: [String: [String: Double]] = [:]
        for (counter, value) in zip(counted, values) {
            let weight = counter.window == currentWindow[counter.policy] ? 1 : (previousWeight[counter.policy] ?? 0)
            estimates[counter.policy, default: [:]][counter.key, default: 0] += Double(value) * weight
        }
        let byPolicy = estimates.mapValues { keys in keys.map { (key: $0.key, count: Int64(exactly: min(max(0, $0.value), 9e18).rounded()) ?? 0) } }
        var policies: [JSONValue] = policiesInForce.map { policy in
            [
                "name": .string(policy.name), "key": .string(policy.key.description), "limit": .integer(Int64(policy.limit)),
                "window_seconds": .number(policy.window.seconds),
                "burst": policy.burst.map { .integer(Int64($0)) } ?? .null, "configured": true,
            ]
        }
        for name in byPolicy.keys.sorted() where configured[name] == nil {
            policies.append(["name": .string(name), "key": .null, "limit": .null, "window_seconds": .null, "burst": .null, "configured": false])
        }
        var consumers: [JSONValue] = []
        for name in byPolicy.keys.sorted() {
            let sorted = (byPolicy[name] ?? []).sorted { $0.count != $1.count ? $0.count > $1.count : $0.key < $1.key }.prefix(top)
            for entry in sorted {
                var object: [String: JSONValue] = ["policy": .string(name), "key": .string(entry.key), "count": .integer(entry.count)]
                if let policy = configured[name] { object["utilization"] = .number(Double(entry.count) / Double(policy.limit)) } else { object["utilization"] = .null }
                consumers.append(.object(object))
            }
        }
        return ["policies": .array(policies), "top_consumers": .array(consumers)]
    }
}
