#if canImport(Glibc)
import Glibc
#endif

/// The harnesses one fuzz binary carries (docs/fuzzing.md). One binary rather than one per
/// target: the gateway and its dependencies are compiled with the fuzzer's instrumentation once,
/// and SwiftPM's `<Target>_main` entry trick (see `FuzzEntry.swift`) is needed once.
/// The target is chosen with `PORTCULLIS_FUZZ_TARGET` (an environment variable, so that processes
/// libFuzzer forks for `-fork`/`-jobs` inherit it) or a leading `--target=NAME` argument.
enum FuzzTarget: String, CaseIterable {
    /// JOSE parsers and verifier (`FuzzHarness`).
    case jose
    /// `UpstreamResponseParser` and the response the client gets (`ResponseHarness`).
    case response
    /// Chunked decoding: the input is a chunked body behind a fixed head (`ResponseHarness`).
    case chunked
    /// NIO's request decoder → target check → router → header rewrite → upstream head (`RequestHeadHarness`).
    case requestHead = "request-head"
    /// The PROXY protocol header parser (`ProxyProtocolHarness`).
    case proxyProtocol = "proxy-protocol"
    /// The WebSocket relay's frame-boundary tracker (`WebSocketFramesHarness`).
    case webSocketFrames = "websocket-frames"
    /// The HTTP/2 frame guard's header scanner (`HTTP2FramesHarness`).
    case http2Frames = "http2-frames"

    static let environmentVariable = "PORTCULLIS_FUZZ_TARGET"

    /// The target named in the environment; `jose` when none is named.
    static func selected() -> FuzzTarget {
        guard let pointer = getenv(environmentVariable) else { return .jose }
        let name = String(cString: pointer)
        guard let target = FuzzTarget(rawValue: name) else {
            fatalError("\(environmentVariable)=\(name): not one of \(allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return target
    }

    /// Takes a leading `--target=NAME` out of the arguments into the environment.
    static func takeTargetArgument(_ arguments: inout [String]) {
        guard let first = arguments.first, first.hasPrefix("--target=") else { return }
        setenv(environmentVariable, String(first.dropFirst("--target=".count)), 1)
        arguments.removeFirst()
    }

    func run(_ input: UnsafeRawBufferPointer) {
        switch self {
        case .jose: FuzzHarness.run(input)
        case .response: ResponseHarness.run(Array(input), chunkedBodyOnly: false)
        case .chunked: ResponseHarness.run(Array(input), chunkedBodyOnly: true)
        case .requestHead: RequestHeadHarness.run(Array(input))
        case .proxyProtocol: ProxyProtocolHarness.run(Array(input))
        case .webSocketFrames: WebSocketFramesHarness.run(Array(input))
        case .http2Frames: HTTP2FramesHarness.run(Array(input))
        }
    }

    /// Inputs the harness itself knows to be interesting (written by `--write-seeds`).
    var seeds: [[UInt8]] {
        switch self {
        case .jose: FuzzHarness.fixture.seeds
        case .response: ResponseHarness.responseSeeds
        case .chunked: ResponseHarness.chunkedSeeds
        case .requestHead: RequestHeadHarness.seeds
        case .proxyProtocol: ProxyProtocolHarness.seeds
        case .webSocketFrames: WebSocketFramesHarness.seeds
        case .http2Frames: HTTP2FramesHarness.seeds
        }
    }
}
