import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import PortcullisConfig
import Synchronization

/// Exports the node's spans over OTLP/HTTP (binary protobuf): a task of its own takes the spans
/// finished requests queued in `requestTracing`, every `tick`, and posts them to the endpoint
/// when `export_interval` has passed or a batch is full (`batchSpans`), at most `batchSpans` per
/// post. The node starts it before serving and stops it after its connections drained, so the
/// spans of the last requests are still exported.
///
/// Written here rather than through swift-otel: its tracer hands every span start and end to a
/// task of its own through two `AsyncStream`s and an actor, and on a busy event loop each of those
/// wakes preempts the loop (docs/benchmarks.md "Tracing"). Here a request's spans are values,
/// queued under one lock when it ends, and the export task wakes on its own clock.
final class TracingExporter: Sendable {
    let requestTracing: RequestTracing
    private let endpoint: String
    /// `endpoint` without a user or password, for the log.
    private let endpointForLogs: String
    private let headers: HTTPHeaders
    private let resource: [(key: String, value: String)]
    private let exportInterval: Duration
    private let client: HTTPClient
    private let logger: Logger
    private let task = Mutex<Task<Void, Never>?>(nil)
    private let stopping = Atomic<Bool>(false)
    /// How often the export task looks at the queue.
    static let tick: Duration = .milliseconds(50)
    /// The most spans in one post; a queue this long is posted without waiting for the interval.
    static let batchSpans = 1024
    /// How long one export (its posts together) may take before it is given up (its spans are lost).
    static let postTimeout: TimeAmount = .seconds(10)
    /// How long `stop` waits for the last export: an unreachable collector must not hold a
    /// stopping node for a post's whole timeout.
    static let stopTimeout: TimeAmount = .seconds(3)

    /// TLS to an `https` endpoint: `ca_file`'s roots (which parsing the configuration loaded
    /// once already), or the system's.
    private static func tlsConfiguration(_ config: TracingConfig) throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile = config.caFile {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            } catch {
                throw GatewayError.tracing("tracing.ca_file \(caFile): \(error)")
            }
        }
        return tls
    }

    init(config: TracingConfig, node: String, logger: Logger) throws {
        var configuration = HTTPClient.Configuration(tlsConfiguration: try Self.tlsConfiguration(config))
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .seconds(5), read: Self.postTimeout)
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        endpoint = config.endpoint
        endpointForLogs = Self.withoutCredentials(config.endpoint)
        var headers = HTTPHeaders(config.headers.map { ($0.name, $0.value) })
        headers.replaceOrAdd(name: "Content-Type", value: "application/x-protobuf")
        headers.replaceOrAdd(name: "User-Agent", value: "portcullis/\(PortcullisVersion.current)")
        self.headers = headers
        resource = [("service.name", config.serviceName), ("service.instance.id", node),
                    ("service.version", PortcullisVersion.current)]
        exportInterval = config.exportInterval
        requestTracing = RequestTracing(node: node, samplingRatio: config.samplingRatio)
        self.logger = logger
    }

    /// Starts the export task, outside the node's graceful shutdown (which would end it before the drain).
    func start() {
        let tick = min(Self.tick, exportInterval)
        task.withLock {
            $0 = Task.detached { [self] in
                let clock = ContinuousClock()
                var lastExport = clock.now
                while !stopping.load(ordering: .relaxed) {
                    try? await Task.sleep(for: tick)
                    let due = clock.now - lastExport >= exportInterval
                    guard due || requestTracing.pendingCount >= Self.batchSpans else { continue }
                    lastExport = clock.now
                    await export(deadline: .now() + Self.postTimeout)
                }
            }
        }
    }

    /// Posts everything queued, `batchSpans` at a time, each post abandoned at `deadline`.
    private func export(deadline: NIODeadline) async {
        let taken = requestTracing.take()
        if taken.dropped > 0 {
            logger.warning("tracing: spans dropped, the export queue was full", metadata: ["dropped": "\(taken.dropped)"])
        }
        var start = 0
        while start < taken.spans.count {
            let batch = taken.spans[start..<min(start + Self.batchSpans, taken.spans.count)]
            start += batch.count
            await post(batch, deadline: deadline)
        }
    }

    private func post(_ spans: ArraySlice<FinishedSpan>, deadline: NIODeadline) async {
        var request = HTTPClientRequest(url: endpoint)
        request.method = .POST
        request.headers = headers
        request.body = .bytes(OTLPTraceRequest.encode(spans: spans, resource: resource, scopeVersion: PortcullisVersion.current))
        do {
            let response = try await client.execute(request, deadline: deadline)
            // The body is small (a partial-success message at most); read it so the connection is reused.
            if await !Self.readBody(response.body, until: deadline) {
                logger.warning("tracing: the OTLP endpoint did not finish its answer in time; it is abandoned", metadata: [
                    "endpoint": "\(endpointForLogs)", "status": "\(response.status.code)", "spans": "\(spans.count)"])
            }
            if response.status.code / 100 != 2 {
                logger.warning("tracing: the OTLP endpoint refused an export", metadata: [
                    "endpoint": "\(endpointForLogs)", "status": "\(response.status.code)", "spans": "\(spans.count)"])
            }
        } catch {
            logger.warning("tracing: an export failed; its spans are lost", metadata: [
                "endpoint": "\(endpointForLogs)", "error": "\(error)", "spans": "\(spans.count)"])
        }
    }

    /// Reads (and drops) a response body, but no longer than until `deadline`: AsyncHTTPClient's
    /// deadline ends with the response head, and its read timeout restarts with every byte, so a
    /// collector dripping its body would otherwise hold the one export task — and every later
    /// export — for good. False when the body was cut off at the deadline.
    private static func readBody(_ body: HTTPClientResponse.Body, until deadline: NIODeadline) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                _ = try? await body.collect(upTo: 64 * 1024)
                return true
            }
            group.addTask {
                try? await Task.sleep(for: .nanoseconds(max(0, (deadline - .now()).nanoseconds)))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    static func withoutCredentials(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.user != nil || components.password != nil else { return url }
        components.user = nil
        components.password = nil
        return components.string ?? url
    }

    /// Exports what is queued and stops, within `stopTimeout`: an export under way may finish in
    /// that time (it is cancelled, and its spans lost, only past it), then what is still queued is
    /// posted with the rest of it.
    func stop() async {
        let deadline = NIODeadline.now() + Self.stopTimeout
        stopping.store(true, ordering: .relaxed)
        if let running = task.withLock({ task -> Task<Void, Never>? in defer { task = nil }; return task }) {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await running.value }
                group.addTask { try? await Task.sleep(for: .nanoseconds((deadline - .now()).nanoseconds)) }
                await group.next()
                running.cancel()
                group.cancelAll()
            }
        }
        await export(deadline: deadline)
        try? await client.shutdown()
    }
}
