// swift-tools-version:6.1
import PackageDescription

// Swift 6 language mode (from the tools version) gives complete strict concurrency checking.
// Release builds drop the dynamic exclusivity checks in our targets (they showed in request-path
// profiles); cluster/build-release.sh drops them in the dependencies too, which only the command
// line can do. Debug builds and the tests keep them everywhere.
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let package = Package(
    name: "portcullis",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "portcullis", targets: ["PortcullisCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.7.3"),
        .package(url: "https://github.com/swift-otel/swift-w3c-trace-context", from: "1.0.0"),
    ],
    targets: [
        // hiredis 0.14 (Debian's libhiredis-dev): RESP formatting and parsing only; NIO owns the socket.
        .systemLibrary(
            name: "CHiredis",
            pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        // The resident set and glibc's malloc_trim, which Swift's Glibc module does not map.
        .target(name: "CProcessMemory"),
        .target(
            name: "PortcullisRedis",
            dependencies: [
                "CHiredis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "PortcullisConfig",
            dependencies: [
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "PortcullisJOSE",
            dependencies: [
                "PortcullisConfig",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: strict
        ),
        // Metrics registry and facade factory (with help text for every metric), log formats.
        .target(
            name: "PortcullisObservability",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "PortcullisCluster",
            dependencies: [
                "PortcullisRedis",
                "PortcullisJOSE",
                "PortcullisConfig",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "PortcullisGateway",
            dependencies: [
                "CProcessMemory",
                "PortcullisJOSE",
                "PortcullisObservability",
                "PortcullisCluster",
                "PortcullisConfig",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "W3CTraceContext", package: "swift-w3c-trace-context"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "PortcullisControl",
            dependencies: [
                // Redis directly for its own state (audit stream, refresh tokens, signing keys,
                // locks); cluster state only through PortcullisCluster.
                "PortcullisRedis",
                "PortcullisJOSE",
                "PortcullisObservability",
                "PortcullisCluster",
                "PortcullisConfig",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                // Server-rendered login and consent pages (HTML-escaping by default).
                .product(name: "Mustache", package: "swift-mustache"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "PortcullisCLI",
            dependencies: [
                "PortcullisGateway",
                "PortcullisObservability",
                "PortcullisControl",
                "PortcullisJOSE",
                "PortcullisConfig",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict
        ),
        // Fixtures the tests share: real redis-server / redis-sentinel processes, the portcullis
        // binary, free ports. Not a product; nothing in Sources/ depends on it.
        .target(
            name: "PortcullisTestSupport",
            dependencies: [
                "PortcullisRedis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // `portcullis-bench`: the benchmarks behind docs/benchmarks.md. Run in release mode only.
        .executableTarget(
            name: "PortcullisBench",
            dependencies: [
                "PortcullisRedis",
                "PortcullisJOSE",
                "PortcullisCluster",
                "PortcullisGateway",
                "PortcullisTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict
        ),
        // libFuzzer targets: the JOSE parser and verifier, and the gateway's HTTP/1.1 path (the
        // upstream response parser, chunked decoding, the request head path). See docs/fuzzing.md.
        .executableTarget(
            name: "PortcullisFuzz",
            dependencies: [
                "PortcullisJOSE",
                "PortcullisGateway",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PortcullisConfigTests",
            dependencies: ["PortcullisConfig"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PortcullisRedisTests",
            dependencies: ["PortcullisRedis", "PortcullisTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PortcullisJOSETests",
            dependencies: [
                "PortcullisJOSE",
                "PortcullisTestSupport",
                // An in-test HTTP server plays the remote JWKS endpoint.
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            // Test vectors and their Python generator, read from the source tree at run time.
            exclude: ["Vectors"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PortcullisGatewayTests",
            // PortcullisFuzz for its RFC 9112 response oracle, which the randomized parser test compares against.
            dependencies: ["PortcullisGateway", "PortcullisObservability", "PortcullisCluster", "PortcullisConfig", "PortcullisJOSE", "PortcullisTestSupport",
                           "PortcullisFuzz"],
            // Seed inputs and the dictionary of the HTTP fuzz targets (docs/fuzzing.md); the raw
            // HTTP/2 and gRPC peers the HTTP/2 tests drive; the Selenium script of the browser CORS test.
            exclude: ["Fuzz", "Scripts", "Browser"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PortcullisClusterTests",
            dependencies: ["PortcullisCluster", "PortcullisTestSupport", .product(name: "Crypto", package: "swift-crypto")],
            exclude: ["Scripts"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PortcullisControlTests",
            dependencies: ["PortcullisControl", "PortcullisJOSE", "PortcullisTestSupport", .product(name: "Crypto", package: "swift-crypto")],
            exclude: ["Scripts"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["PortcullisTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "CLITests",
            dependencies: ["PortcullisTestSupport"],
            swiftSettings: strict
        ),
    ]
)
