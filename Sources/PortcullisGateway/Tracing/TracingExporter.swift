import Logging
import OTel
import ServiceLifecycle
import Tracing

/// swift-otel's tracing backend for one node: the tracer the request path uses
/// (`requestTracing`) and the services behind it (batching, the OTLP/HTTP exporter). The node
/// runs them in a service group of their own and stops it after its connections drained, so the
/// spans of the last requests are still exported.
final class TracingExporter: Sendable {
    let requestTracing: RequestTracing
    private let group: ServiceGroup

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
        guard let sampler = OTel.Configuration.TracesConfiguration.SamplerConfiguration.parentBasedTraceIDRatio(ratio: config.samplingRatio) else {
            throw GatewayError.tracing("sampling_ratio \(config.samplingRatio) is not between 0 and 1")
        }
        otel.traces.sampler = sampler
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
        requestTracing = RequestTracing(tracer: backend.factory, node: node)
        group = ServiceGroup(configuration: .init(services: [.init(service: backend.service)], logger: logger))
    }

    /// Runs the exporter until `stop`.
    func run() async {
        do {
            try await group.run()
        } catch {
            // Exporting is best effort: the gateway keeps serving without it.
        }
    }

    /// Exports what is queued, then ends `run`.
    func stop() async {
        await group.triggerGracefulShutdown()
    }
}
