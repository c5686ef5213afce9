import ArgumentParser
import Foundation
import Logging
import NIOPosix
import PortcullisCluster
import PortcullisJOSE
import PortcullisRedis
import PortcullisTestSupport
import Synchronization

/// `portcullis-bench cluster`: a real N-node cluster on loopback (redis-server, gateway processes,
/// an upstream), measuring what issue 5 and 7 promise:
/// 1. revocation propagation — durable write to applied on every node — under request load;
/// 2. rate-limit accuracy with load at 10× the limit spread over the nodes;
/// 3. wrongly rejected requests with load at the limit spread unevenly;
/// 4. throughput of the cluster.
struct ClusterBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cluster", abstract: "Multi-node revocation propagation, rate-limit accuracy and throughput.")

    @Option(help: "Gateway nodes.") var nodes = 3
    @Option(help: "Revocations to time.") var revocations = 300
    @Option(help: "Milliseconds between revocations.") var revocationInterval = 20
    @Option(help: "Rate limit (requests per second, cluster-wide).") var limit = 200
    @Option(help: "Seconds of load for each rate-limit phase.") var seconds = 30
    @Option(help: "Write raw propagation samples (ms, one per line per node) to this file.") var samples: String?
    @Option(help: "Other revocations per second written (16 concurrent writers) while propagation is timed.") var backgroundWrites = 0
    @Flag(help: "Only the propagation phase.") var propagationOnly = false

    func run() async throws {
        try ReleaseGateway.select()
        try await withCleanup(try await BenchCluster.start(nodes: nodes, limit: limit), { await $0.stop() }) { cluster in
            try await propagation(cluster)
            try await massRevocation(cluster)
            if propagationOnly { return }
            try await accuracy(cluster)
            try await uneven(cluster)
            try await throughput(cluster)
        }
    }

    // MARK: 1. Propagation under load

    func propagation(_ cluster: BenchCluster) async throws {
        print("== revocation propagation: \(revocations) revocations every \(revocationInterval) ms, under load on every node"
              + (backgroundWrites > 0 ? ", while \(backgroundWrites) other revocations/s are written ==" : " =="))
        // Every node's signed acknowledgements, as the control plane sees them: a node acknowledges
        // the last change of each message it applies, with that message's write-to-applied time
        // (all changes of one message were written by one script, at one Redis time).
        let probe = try PropagationProbe(cluster: cluster)
        let load = cluster.gateways.map { gateway in
            Wrk.start(port: gateway.port, path: "/api/load", token: cluster.validToken, seconds: revocations * revocationInterval / 1000 + 8, connections: 16)
        }
        try await Task.sleep(for: .seconds(2))
        let written = BackgroundCounter()
        let writers = (0..<(backgroundWrites > 0 ? 16 : 0)).map { writer in
            Task {
                // Paced by deadline, so each writer keeps its share of the rate whatever a write takes.
                let pause = Duration.seconds(16.0 / Double(backgroundWrites))
                var next = ContinuousClock.now
                while !Task.isCancelled {
                    if (try? await cluster.revoke("background-\(writer)-\(UUID().uuidString)")) != nil { written.increment() }
                    next += pause
                    if next > ContinuousClock.now { try? await Task.sleep(until: next) }
                }
            }
        }
        let started = ContinuousClock.now
        let samples = try await probe.time(cluster, count: revocations, intervalMillis: revocationInterval, nodes: cluster.gateways.count)
        let (toAll, perNode) = (samples.toAll, samples.perNode)
        let elapsed = (ContinuousClock.now - started).seconds
        for writer in writers { writer.cancel() }
        for writer in writers { await writer.value }
        await probe.close()
        let results = load.map { $0.wait() }
        print(String(format: "  to all %d nodes: p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms  (n=%d)",
                     cluster.gateways.count, percentile(toAll, 50), percentile(toAll, 90), percentile(toAll, 99), toAll.max() ?? 0, toAll.count))
        for (node, values) in perNode.sorted(by: { $0.key < $1.key }) {
            print(String(format: "  %@: p50 %.3f ms  p99 %.3f ms", node, percentile(values, 50), percentile(values, 99)))
        }
        if backgroundWrites > 0 {
            print(String(format: "  other revocations written meanwhile: %d in %.1f s (%.0f/s)", written.value, elapsed, Double(written.value) / elapsed))
        }
        print(String(format: "  load meanwhile: %.0f req/s across the nodes, %d non-2xx", results.map(\.requestsPerSecond).reduce(0, +), results.map(\.non2xx).reduce(0, +)))
        if let samplesFile = self.samples {
            let lines = perNode.flatMap { node, values in values.map { "\(node) \($0)" } } + toAll.map { "all \($0)" }
            try lines.joined(separator: "\n").write(toFile: samplesFile, atomically: true, encoding: .utf8)
            print("  samples written to \(samplesFile)")
        }
    }

    /// A batch of 10 000 jti revocations (the admin API's shape: signed changes of 1 000 tokens,
    /// one script): from the call to every node's signed acknowledgement of its last change.
    func massRevocation(_ cluster: BenchCluster) async throws {
        print("== mass revocation: batches of 10 000 jtis, durable and applied on all \(cluster.gateways.count) nodes ==")
        var samples: [Double] = []
        for round in 0..<5 {
            let exp = Int64(Date().timeIntervalSince1970) + 600
            let changes = (0..<10).map { part in
                let tokens = (0..<1000).map { Revocation.Token(jti: "mass-\(round)-\(part)-\($0)-\(UUID().uuidString)", expiresAt: exp) }
                return Revocation(id: "rev_mass_\(round)_\(part)_\(UInt32.random(in: 0...UInt32.max))", operation: .add, kind: .jti,
                                  value: tokens[0].jti, issuer: nil, until: exp, createdAtMillis: exp * 1000, actor: "bench", reason: nil,
                                  batch: Array(tokens.dropFirst()))
            }
            let started = ContinuousClock.now
            let events = try await cluster.store.writeBatch(changes)
            guard let last = events.last else { continue }
            var applied = false
            while ContinuousClock.now - started < .seconds(10) {
                let live = try await Membership(client: cluster.client, keys: ClusterKeys(prefix: "portcullis:"), mac: cluster.mac,
                                                alarm: TamperingAlarm(prefix: "portcullis:", logger: Logger(label: "bench"))).liveNodes()
                if live.count >= cluster.gateways.count, live.allSatisfy({ ($0.ack?.epoch == last.epoch) && ($0.ack?.sequence ?? -1) >= last.sequence }) {
                    applied = true
                    break
                }
                try await Task.sleep(for: .milliseconds(2))
            }
            let millis = (ContinuousClock.now - started).seconds * 1000
            print(String(format: "  round %d: %@ in %.0f ms", round + 1, applied ? "applied on every node" : "NOT applied everywhere", millis))
            if applied { samples.append(millis) }
            try await Task.sleep(for: .milliseconds(500))
        }
        print(String(format: "  median %.0f ms, max %.0f ms (n=%d)", percentile(samples, 50), samples.max() ?? 0, samples.count))
    }

    // MARK: 2. Accuracy at 10x

    func accuracy(_ cluster: BenchCluster) async throws {
        print("== rate-limit accuracy: limit \(limit)/s cluster-wide, wrk flat out on every node for \(seconds) s ==")
        try await Task.sleep(for: .seconds(2))
        let load = cluster.gateways.map { Wrk.start(port: $0.port, path: "/limited/x", token: cluster.validToken, seconds: seconds, connections: 8) }
        let results = load.map { $0.wait() }
        let attempted = results.map(\.requests).reduce(0, +)
        let admitted = results.map { $0.requests - $0.non2xx }.reduce(0, +)
        let expected = limit * seconds
        print(String(format: "  attempted %d (%.1f× the limit), admitted %d, expected %d: error %+.2f %%",
                     attempted, Double(attempted) / Double(expected), admitted, expected, (Double(admitted) / Double(expected) - 1) * 100))
        for (gateway, result) in zip(cluster.gateways, results) {
            print("  \(gateway.port): \(result.requests - result.non2xx) admitted of \(result.requests)")
        }
    }

    // MARK: 3. Uneven load at the limit

    func uneven(_ cluster: BenchCluster) async throws {
        let shares = [0.7, 0.2, 0.1] + Array(repeating: 0.0, count: max(0, cluster.gateways.count - 3))
        print("== rate-limit at the limit, uneven: \(limit)/s total split \(shares.prefix(cluster.gateways.count).map { "\(Int($0 * 100))%" }.joined(separator: "/")) for \(seconds) s ==")
        try await Task.sleep(for: .seconds(3))
        let senders = zip(cluster.gateways, shares).filter { $0.1 > 0 }.map { gateway, share in
            PacedLoad.start(port: gateway.port, path: "/limited/u", token: cluster.validToken, rate: Double(limit) * share, seconds: seconds)
        }
        let results = senders.map { $0.wait() }
        let sent = results.map(\.sent).reduce(0, +)
        let rejected = results.map(\.rejected).reduce(0, +)
        print(String(format: "  sent %d, rejected %d: %.2f %% wrongly rejected (errors: %d)", sent, rejected,
                     Double(rejected) / Double(max(sent, 1)) * 100, results.map(\.errors).reduce(0, +)))
    }

    // MARK: 4. Throughput

    func throughput(_ cluster: BenchCluster) async throws {
        print("== throughput: wrk on every node at once, one cached ES256 token, 10 s ==")
        try await Task.sleep(for: .seconds(2))
        let results = cluster.gateways.map { Wrk.start(port: $0.port, path: "/api/t", token: cluster.validToken, seconds: 10, connections: 32) }.map { $0.wait() }
        print(String(format: "  %.0f req/s total (%@), %d non-2xx", results.map(\.requestsPerSecond).reduce(0, +),
                     results.map { String(format: "%.0f", $0.requestsPerSecond) }.joined(separator: " + "), results.map(\.non2xx).reduce(0, +)))
    }
}
