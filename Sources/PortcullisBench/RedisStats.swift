import Foundation
import PortcullisCluster
import PortcullisRedis

/// A reading of Redis's own counters (`INFO commandstats`, `INFO cpu`), and the rates between two
/// readings: commands per second by command, and the CPU Redis used. Redis counts the commands a
/// Lua script runs as commands too (and their time inside the script's), so a script's calls
/// show under its own name and under each command it runs.
struct RedisStats {
    /// Calls by command name (lower case, `evalsha`, `publish`, …; subcommands such as
    /// `client|setname` as Redis names them).
    var calls: [String: Double] = [:]
    /// used_cpu_user + used_cpu_sys of the server (all its threads), seconds.
    var cpuSeconds = 0.0
    var taken = ContinuousClock.now

    /// Reads the counters. The bench's own `INFO` calls are left out of every figure.
    static func read(_ client: RedisClient) async throws -> RedisStats {
        var stats = RedisStats()
        let commands = try await client.send("INFO", "commandstats").string ?? ""
        for line in commands.split(whereSeparator: \.isNewline) where line.hasPrefix("cmdstat_") {
            let parts = line.dropFirst(8).split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            for field in parts[1].split(separator: ",") where field.hasPrefix("calls=") {
                if parts[0] != "info" { stats.calls[String(parts[0])] = Double(field.dropFirst(6)) ?? 0 }
            }
        }
        let cpu = try await client.send("INFO", "cpu").string ?? ""
        for line in cpu.split(whereSeparator: \.isNewline) {
            let pair = line.split(separator: ":")
            if pair.count == 2, pair[0] == "used_cpu_sys" || pair[0] == "used_cpu_user" { stats.cpuSeconds += Double(pair[1]) ?? 0 }
        }
        stats.taken = ContinuousClock.now
        return stats
    }

    /// Rates from `earlier` to this reading.
    func since(_ earlier: RedisStats) -> Rates {
        let seconds = max(1e-9, (taken - earlier.taken).seconds)
        var perCommand: [String: Double] = [:]
        for (name, now) in calls {
            let delta = now - (earlier.calls[name] ?? 0)
            if delta > 0 { perCommand[name] = delta / seconds }
        }
        return Rates(seconds: seconds, perCommand: perCommand, cpu: (cpuSeconds - earlier.cpuSeconds) / seconds)
    }

    /// What Redis did per second between two readings.
    struct Rates {
        var seconds: Double
        var perCommand: [String: Double]
        /// Cores used by the redis-server process (command execution, networking, pub/sub fan-out).
        var cpu: Double

        var total: Double { perCommand.values.reduce(0, +) }

        /// `total/s (evalsha 4000, hgetall 400, …)`, largest first.
        var breakdown: String {
            let parts = perCommand.sorted { $0.value > $1.value }.map { String(format: "%@ %.0f", $0.key, $0.value) }
            return String(format: "%.0f commands/s (%@)", total, parts.joined(separator: ", "))
        }
    }
}
