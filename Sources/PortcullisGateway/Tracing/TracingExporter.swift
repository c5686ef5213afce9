import Logging
import OTel
import ServiceLifecycle
import Synchronization
import Tracing

/// swift-otel's tracing backend for one node: the tracer the request path uses
/// (`requestTracing`), the task that flushes its finished spans to the tracer, and the services
/// behind it (batching, the OTLP/HTTP exporter). The node
/// runs them in a service group of their own and stops it after its connections drained, so the
/// spans of the last requests are still exported.
final class TracingExporter: Sendable {
    let requestTracing: RequestTracing
    private let group: ServiceGroup
    private let finished = Atomic<Bool>(false)
    private let flusher = Mutex<Task<Void, Never>?>(nil)
    /// How long `stop` waits for the last export: an unreachable collector must not hold a
    /// stopping node for the exporter's whole timeout.
    static let stopTimeout: Duration = .seconds(3)

    /// `OTEL_*` environment variables override the configuration, as swift-otel documents.
    init(config: TracingConfig, node: String, logger: Logger) throws {
        var otel = OTel.Configuration.default
        otel.serviceName = config.serviceName
        otel.resourceAttributes = ["service.instance.id": node]
        otel.diagnosticLogger = .custom(logger)
        otel.logs.enabled = false
        otel.metrics.enabled = false
        otel.traces.enabled = true
        otel.propagators = [.traceContext]
        // The client's sampled flag decides for its trace; `RequestTracing` draws `sampling_ratio`
        // for traces started here and hands the tracer only those it records.
        otel.traces.sampler = .parentBasedAlwaysOn
        otel.traces.batchSpanProcessor.scheduleDelay = config.exportInterval
        otel.traces.exporter = .otlp
        otel.traces.otlpExporter.protocol = .httpProtobuf
        otel.traces.otlpExporter.endpoint = config.endpoint
        let backend: (factory: any Tracer, service: any Service)
        do {
            backend = try OTel.makeTracingBackend(configuration: otel)
        } catch {
            throw GatewayError.tracing("\(error)")
        }
        requestTracing = RequestTracing(tracer: backend.factory, node: node, samplingRatio: config.samplingRatio)
        group = ServiceGroup(configuration: .init(services: [.init(service: backend.service)], logger: logger))
    }

    /// Starts the exporter, in a task of its own: outside the node's graceful shutdown, which
    /// would end it before the drain.
    func start() {
        let tracing = requestTracing
        flusher.withLock {
            $0 = Task.detached {
                while (try? await Task.sleep(for: RequestTracing.flushInterval)) != nil { tracing.flush() }
            }
        }
        Task.detached { [self] in
            do {
                try await group.run()
            } catch {
                // Exporting is best effort: the gateway serves on without it.
            }
            finished.store(true, ordering: .releasing)
        }
    }

    /// Exports what is queued and stops, waiting at most `stopTimeout` for it.
    func stop() async {
        flusher.withLock { $0?.cancel() }
        requestTracing.flush()
        await group.triggerGracefulShutdown()
        let deadline = ContinuousClock.now + Self.stopTimeout
        while !finished.load(ordering: .acquiring), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }
}
