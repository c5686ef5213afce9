import ArgumentParser
import Foundation
import PortcullisCluster
import PortcullisTestSupport

/// `portcullis-bench scale`: many gateway processes (`event_loops: 1`, the gateway's default
/// heartbeat and rate-limit sync intervals) against one redis-server on loopback, measuring what
/// one Redis primary carries (issue 17, "Scale, by simulation"):
/// 1. Redis commands/s (by command, from `INFO commandstats`), Redis CPU and CPU per gateway
///    (/proc/PID/stat) at idle, with one active rate-limit key per node and with `--keys` keys
///    per node (paced requests on every node, so each node runs its 50 ms rate-limit sync);
/// 2. revocation propagation to all nodes (signed acknowledgements, as `cluster` times it) at
///    idle and under the one-key load;
/// 3. a last node joining with `--entries` revocations while the others serve.
/// Lines starting with `RESULT` carry the figures for `cluster/bench/scale.sh`'s medians.
struct ScaleBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "scale", abstract: "Many nodes on one Redis: commands/s, CPU, propagation, join sync.")

    @Option(help: "Gateway nodes.") var nodes = 20
    @Option(help: "Seconds each load phase's counters are read over.") var seconds = 10
    @Option(help: "Revocations to time per propagation phase.") var revocations = 300
    @Option(help: "Milliseconds between timed revocations.") var revocationInterval = 20
    @Option(help: "Requests per second sent to each node in the rate-limit phases.") var rate = 50
    @Option(help: "Active rate-limit keys per node in the many-keys phase.") var keys = 10
    @Option(help: "Revocations in Redis when the last node joins (0: no join phase).") var entries = 1_000_000

    func run() async throws {
        try ReleaseGateway.select()
        print("== starting redis-server, an upstream and \(nodes) gateways (event_loops: 1, default intervals) ==")
        let settings = BenchCluster.Settings(nodes: nodes, limit: 1_000_000, heartbeatInterval: nil, tenantLimit: 1_000_000)
        let started = ContinuousClock.now
        try await withCleanup(try await BenchCluster.start(settings), { await $0.stop() }) { cluster in
            print("  up in \(started.duration(to: .now))")
            let probe = try PropagationProbe(cluster: cluster)
            // Every node has heartbeated a few times and sees the others.
            try await Task.sleep(for: .seconds(3))

            let idle = try await measure("idle", cluster: cluster, gateways: cluster.gateways)
            try await propagation("idle", cluster: cluster, probe: probe, nodes: nodes)

            // One active key per node: the `cluster-wide` policy (key: route) on /limited.
            let timedSeconds = revocations * (revocationInterval + 15) / 1000
            let oneKey = cluster.gateways.map {
                PacedLoad.start(port: $0.port, path: "/limited/x", token: cluster.validToken, rate: Double(rate), seconds: 2 + seconds + timedSeconds + 10, threads: 2)
            }
            try await Task.sleep(for: .seconds(2))
            let one = try await measure("one-key", cluster: cluster, gateways: cluster.gateways)
            try await propagation("one-key", cluster: cluster, probe: probe, nodes: nodes)
            report(load: oneKey, label: "one-key")

            // `--keys` active keys per node: the `per-tenant` policy (key: header x-tenant).
            let tenants = (0..<keys).map { "tenant-\($0)" }
            let manyKeys = cluster.gateways.map {
                PacedLoad.start(port: $0.port, path: "/tenant/x", token: cluster.validToken, rate: Double(rate), seconds: 2 + seconds + 5, threads: 2,
                                keyHeader: (name: "x-tenant", values: tenants))
            }
            try await Task.sleep(for: .seconds(2))
            let many = try await measure("keys-\(keys)", cluster: cluster, gateways: cluster.gateways)
            report(load: manyKeys, label: "keys-\(keys)")
            arithmetic(idle: idle, one: one, many: many)

            if entries > 0 {
                try await join(cluster: cluster, probe: probe)
            }
            await probe.close()
        }
    }

    // MARK: Counters over a phase

    /// What one phase cost: Redis's commands and CPU, each gateway's CPU, the machine's.
    struct Phase {
        var name: String
        var redis: RedisStats.Rates
        /// Cores used by the redis-server process (/proc).
        var redisCPU: Double
        /// Cores used by each gateway process.
        var gatewayCPU: [Double]
        /// Cores used by this process (the load senders and the probe).
        var benchCPU: Double
        /// Busy cores of the whole machine.
        var machineCPU: Double
    }

    func measure(_ name: String, cluster: BenchCluster, gateways: [GatewayProcess]) async throws -> Phase {
        let pids = gateways.map(\.process.pid)
        let redisPid = cluster.redis.pid ?? -1
        let before = (redis: try await RedisStats.read(cluster.client), redisCPU: CPUTime.process(redisPid) ?? 0,
                      gateways: pids.map { CPUTime.process($0) ?? 0 }, bench: CPUTime.process(getpid()) ?? 0, machine: CPUTime.machine())
        let clock = ContinuousClock.now
        try await Task.sleep(for: .seconds(seconds))
        let wall = (ContinuousClock.now - clock).seconds
        let after = (redis: try await RedisStats.read(cluster.client), redisCPU: CPUTime.process(redisPid) ?? 0,
                     gateways: pids.map { CPUTime.process($0) ?? 0 }, bench: CPUTime.process(getpid()) ?? 0, machine: CPUTime.machine())
        let phase = Phase(name: name, redis: after.redis.since(before.redis), redisCPU: (after.redisCPU - before.redisCPU) / wall,
                          gatewayCPU: zip(after.gateways, before.gateways).map { ($0 - $1) / wall }, benchCPU: (after.bench - before.bench) / wall,
                          machineCPU: (after.machine.busy - before.machine.busy) / wall)
        let cores = (after.machine.total - before.machine.total) / wall
        let gatewayPercent = phase.gatewayCPU.map { $0 * 100 }
        print("== \(name): \(gateways.count) nodes, counters over \(String(format: "%.1f", wall)) s ==")
        print("  Redis: " + phase.redis.breakdown)
        print(String(format: "  Redis CPU: %.1f %% of a core (/proc)", phase.redisCPU * 100))
        print(String(format: "  gateway CPU: median %.2f %%, max %.2f %% of a core; all %d together %.1f %%",
                     percentile(gatewayPercent, 50), gatewayPercent.max() ?? 0, gateways.count, gatewayPercent.reduce(0, +)))
        print(String(format: "  machine: %.0f %% of %.0f cores busy; the bench process (load senders, probe) %.1f %% of a core",
                     phase.machineCPU / max(cores, 1) * 100, cores, phase.benchCPU * 100))
        result("\(name).redis_commands_per_s", phase.redis.total)
        for (command, perSecond) in phase.redis.perCommand where perSecond >= 1 { result("\(name).redis.\(command)", perSecond) }
        result("\(name).redis_cpu_pct", phase.redisCPU * 100)
        result("\(name).gateway_cpu_median_pct", percentile(gatewayPercent, 50))
        result("\(name).gateway_cpu_max_pct", gatewayPercent.max() ?? 0)
        result("\(name).machine_busy_pct", phase.machineCPU / max(cores, 1) * 100)
        return phase
    }

    /// Per node and per active key, from the three phases' differences. Redis counts the
    /// commands a script runs (the rate-limit script's GET, INCRBY, PEXPIRE) as commands too, so
    /// both are given: all commands, and the scripts (EVALSHA) that carry them.
    func arithmetic(idle: Phase, one: Phase, many: Phase) {
        let n = Double(nodes)
        let perNodeIdle = idle.redis.total / n
        let extra = many.redis.total - idle.redis.total
        let extraScripts = (many.redis.perCommand["evalsha"] ?? 0) - (idle.redis.perCommand["evalsha"] ?? 0)
        let perKey = extra / (n * Double(keys))
        let scriptsPerKey = extraScripts / (n * Double(keys))
        let redisPerScript = extraScripts > 0 ? (many.redisCPU - idle.redisCPU) / extraScripts * 1e6 : 0
        let redisPerCommand = extra > 0 ? (many.redisCPU - idle.redisCPU) / extra * 1e6 : 0
        let gatewayPerKey = (percentile(many.gatewayCPU, 50) - percentile(idle.gatewayCPU, 50)) / Double(keys) * 100
        print("== per node, per active key (\(keys)-key phase minus idle) ==")
        print(String(format: "  idle: %.1f Redis commands/s per node", perNodeIdle))
        print(String(format: "  rate-limit sync: %.1f commands/s per node per active key, of which %.1f scripts (EVALSHA); one key per node: %.1f",
                     perKey, scriptsPerKey, (one.redis.total - idle.redis.total) / n))
        print(String(format: "  Redis CPU (/proc): %.1f µs per sync script with its commands (%.1f µs per command)", redisPerScript, redisPerCommand))
        print(String(format: "  gateway CPU per active key (median node): %.3f %% of a core", gatewayPerKey))
        result("per_node.idle_commands_per_s", perNodeIdle)
        result("per_node_per_key.commands_per_s", perKey)
        result("per_node_per_key.scripts_per_s", scriptsPerKey)
        result("redis.us_per_sync_script", redisPerScript)
        result("redis.us_per_command", redisPerCommand)
        result("gateway.cpu_pct_per_key", gatewayPerKey)
    }

    // MARK: Propagation

    func propagation(_ name: String, cluster: BenchCluster, probe: PropagationProbe, nodes: Int, count: Int? = nil) async throws {
        let count = count ?? revocations
        print("== propagation (\(name)): \(count) revocations \(revocationInterval) ms apart ==")
        let samples = try await probe.time(cluster, count: count, intervalMillis: revocationInterval, nodes: nodes, label: "scale-\(name)")
        print("  " + samples.line(nodes: nodes))
        let slowest = samples.perNode.map { ($0.key, percentile($0.value, 99)) }.sorted { $0.1 > $1.1 }.prefix(3)
        print("  slowest nodes by p99: " + slowest.map { String(format: "%@ %.3f ms", $0.0, $0.1) }.joined(separator: ", "))
        result("\(name).propagation_p50_ms", percentile(samples.toAll, 50))
        result("\(name).propagation_p99_ms", percentile(samples.toAll, 99))
        result("\(name).propagation_max_ms", samples.toAll.max() ?? 0)
        result("\(name).propagation_missed", Double(samples.missed))
    }

    // MARK: Join

    /// The last node leaves; `entries` revocations are written while the others serve (and apply
    /// them live); then a new last node starts and syncs them all.
    func join(cluster: BenchCluster, probe: PropagationProbe) async throws {
        let serving = Array(cluster.gateways.dropLast())
        print("== join: \(serving.count) nodes serve \(rate) req/s each; \(entries) revocations written; node \(nodes) joins ==")
        await cluster.gateways[nodes - 1].stop()
        let load = serving.map {
            PacedLoad.start(port: $0.port, path: "/limited/j", token: cluster.validToken, rate: Double(rate), seconds: 300, threads: 2)
        }
        let writeStart = ContinuousClock.now
        guard let last = try await MassRevocationWriter.write(entries: entries, store: cluster.store, label: "join") else { return }
        let written = writeStart.duration(to: .now)
        var appliedAll: Duration?
        while ContinuousClock.now - writeStart < .seconds(120) {
            if probe.acks.first(atOrAfter: last.sequence, epoch: last.epoch).filter({ $0.key != "bench-\(nodes)" }).count >= serving.count {
                appliedAll = writeStart.duration(to: .now)
                break
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        print(String(format: "  written in %.0f ms; acknowledged by all %d serving nodes %@", written.seconds * 1000, serving.count,
                     appliedAll.map { String(format: "%.0f ms after the first write", $0.seconds * 1000) } ?? "NOT within 120 s"))
        let redisBefore = try await RedisStats.read(cluster.client)
        let redisCPUBefore = CPUTime.process(cluster.redis.pid ?? -1) ?? 0
        let joinStart = ContinuousClock.now
        let joined = try await cluster.startGateway(index: nodes - 1, readyTimeout: .seconds(120))
        let readyAfter = joinStart.duration(to: .now)
        let redisDuring = try await RedisStats.read(cluster.client).since(redisBefore)
        let redisCPU = ((CPUTime.process(cluster.redis.pid ?? -1) ?? 0) - redisCPUBefore) / readyAfter.seconds
        try await Task.sleep(for: .seconds(1))
        let syncMillis = MassRevocationWriter.loggedSyncMillis(joined.process.output)
        print(String(format: "  joining node: sync %@ ms (its log); process start to ready %.0f ms", syncMillis, readyAfter.seconds * 1000))
        print(String(format: "  Redis while it joined: %.0f %% of a core; %@", redisCPU * 100, redisDuring.breakdown))
        for sender in load { sender.cancel() }
        let results = load.map { $0.wait() }
        let sent = results.map(\.sent).reduce(0, +), errors = results.map(\.errors).reduce(0, +)
        print("  serving nodes meanwhile: \(sent) requests, \(errors) errors, \(results.map(\.rejected).reduce(0, +)) rejected")
        result("join.write_seconds", written.seconds)
        result("join.applied_by_serving_seconds", appliedAll?.seconds ?? -1)
        result("join.sync_ms", Double(syncMillis) ?? -1)
        result("join.ready_seconds", readyAfter.seconds)
        result("join.load_errors", Double(errors))

        // The same propagation with the full list on every node, the joined one included.
        let all = serving + [joined]
        try await withCleanup(joined, { await $0.stop() }) { _ in
            try await Task.sleep(for: .seconds(2))
            try await propagation("after-join", cluster: cluster, probe: probe, nodes: all.count, count: min(revocations, 100))
        }
    }

    // MARK: Output

    /// Ends `load` and prints what it sent.
    func report(load: [PacedLoad], label: String) {
        for sender in load { sender.cancel() }
        let results = load.map { $0.wait() }
        let sent = results.map(\.sent).reduce(0, +)
        print("  load (\(label)): \(sent) requests, \(results.map(\.rejected).reduce(0, +)) rejected, \(results.map(\.errors).reduce(0, +)) errors")
    }

    /// One figure for scale.sh's medians.
    func result(_ key: String, _ value: Double) {
        print(String(format: "RESULT %@ %.3f", key, value))
    }
}
