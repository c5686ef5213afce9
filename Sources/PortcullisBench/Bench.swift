import ArgumentParser

/// `portcullis-bench`: measurements behind docs/benchmarks.md. Build and run in release mode:
/// `swift run -c release PortcullisBench <area>`.
@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "portcullis-bench",
        abstract: "Benchmarks for docs/benchmarks.md (release builds only).",
        subcommands: [JOSEBench.self, RedisBench.self, ClusterBench.self, RevocationBench.self, ScaleBench.self, RateLimitBench.self, RelayFloorBench.self, H2FloorBench.self,
                      WebSocketEchoBench.self, WebSocketRoundTripBench.self]
    )
}
