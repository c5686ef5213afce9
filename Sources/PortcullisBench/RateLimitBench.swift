import ArgumentParser
import Foundation
import Logging
import NIOPosix
import PortcullisCluster
import PortcullisRedis

/// `portcullis-bench ratelimit`: the cost of one rate-limit decision on the request path, for the
/// local limiter and the cluster limiter (whose Redis work happens off the request path).
struct RateLimitBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ratelimit", abstract: "Hot-path cost of rate-limit decisions.")

    @Option(help: "Decisions to time.") var decisions = 5_000_000
    @Option(help: "Distinct keys (e.g. subjects).") var keys = 10_000

    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        // Never connected: the cluster limiter's request path does not touch Redis.
        let client = RedisClient(configuration: try RedisConfiguration(url: "redis://127.0.0.1:9"), eventLoopGroup: group, logger: Logger(label: "bench"))
        let policy = RateLimitPolicy(name: "bench", key: .subject, limit: 1000, window: .seconds(1), burst: 100)
        let names = (0..<keys).map { "sub:user-\($0)" }
        for (label, limiter) in [("local", LocalRateLimiter() as any RateLimiting),
                                 ("cluster", ClusterRateLimiter(client: client, keys: ClusterKeys(prefix: "bench:"), logger: Logger(label: "bench")))] {
            var allowed = 0
            let clock = ContinuousClock()
            let start = clock.now
            for index in 0..<decisions where limiter.acquire(policy: policy, key: names[index % names.count]).allowed {
                allowed += 1
            }
            let elapsed = clock.now - start
            let nanos = (Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9) / Double(decisions)
            print(String(format: "  %@ limiter: %.0f ns per decision (%d keys, %d of %d allowed)", label, nanos, keys, allowed, decisions))
        }
        await client.close()
        try await group.shutdownGracefully()
    }
}
