import Tracing
import W3CTraceContext

/// An OTLP `ExportTraceServiceRequest` (opentelemetry-proto, `collector/trace/v1`), the body of
/// an OTLP/HTTP export in its binary protobuf form (`Content-Type: application/x-protobuf`): one
/// resource (the node), one instrumentation scope, the spans. The field numbers are those of
/// `opentelemetry/proto/trace/v1/trace.proto`, `common/v1/common.proto` and
/// `resource/v1/resource.proto`; a real decoder (the `opentelemetry-proto` Python package, in
/// `TracingTests`' OTLP receiver) reads what this writes.
enum OTLPTraceRequest {
    /// The instrumentation scope named on every export.
    static let scopeName = "portcullis"

    static func encode(spans: some Collection<FinishedSpan>, resource: [(key: String, value: String)], scopeVersion: String) -> [UInt8] {
        var writer = ProtobufWriter(reservingCapacity: 256 + spans.count * 320)
        writer.message(1) { resourceSpans in                    // ExportTraceServiceRequest.resource_spans
            resourceSpans.message(1) { resourceMessage in       // ResourceSpans.resource
                for (key, value) in resource {
                    resourceMessage.message(1) { $0.keyValue(key, .string(value)) } // Resource.attributes
                }
            }
            resourceSpans.message(2) { scopeSpans in            // ResourceSpans.scope_spans
                scopeSpans.message(1) { scope in                // ScopeSpans.scope
                    scope.stringField(1, scopeName)             // InstrumentationScope.name
                    scope.stringField(2, scopeVersion)          // InstrumentationScope.version
                }
                for span in spans {
                    scopeSpans.message(2) { $0.span(span) }     // ScopeSpans.spans
                }
            }
        }
        return writer.bytes
    }

    /// `Span.SpanKind`.
    static func kindNumber(_ kind: SpanKind) -> UInt64 {
        switch kind {
        case .internal: 1
        case .server: 2
        case .client: 3
        case .producer: 4
        case .consumer: 5
        }
    }
}

extension ProtobufWriter {
    /// `trace.v1.Span`.
    fileprivate mutating func span(_ span: FinishedSpan) {
        withUnsafeBytes(of: span.traceID.bytes) { bytesField(1, $0) }        // trace_id
        withUnsafeBytes(of: span.spanID.bytes) { bytesField(2, $0) }         // span_id
        if let state = span.traceState, !state.isEmpty { stringField(3, state) } // trace_state
        if let parent = span.parentSpanID {
            withUnsafeBytes(of: parent.bytes) { bytesField(4, $0) }          // parent_span_id
        }
        stringField(5, span.name)                                            // name
        varintField(6, OTLPTraceRequest.kindNumber(span.kind))              // kind
        fixed64Field(7, span.start)                                          // start_time_unix_nano
        fixed64Field(8, span.end)                                            // end_time_unix_nano
        span.attributes.forEach { key, value in
            message(9) { $0.keyValue(key, value) }                           // attributes
        }
        if span.isError {
            message(15) { $0.varintField(3, 2) }                             // status { code: STATUS_CODE_ERROR }
        }
    }

    /// `common.v1.KeyValue`.
    fileprivate mutating func keyValue(_ key: String, _ value: SpanAttribute) {
        stringField(1, key)
        message(2) { $0.anyValue(value) }
    }

    /// `common.v1.AnyValue`: string 1, bool 2, int 3, double 4, array 5.
    private mutating func anyValue(_ value: SpanAttribute) {
        switch value {
        case .string(let string): stringField(1, string)
        case .bool(let bool): varintField(2, bool ? 1 : 0)
        case .int32(let int): int64Field(3, Int64(int))
        case .int64(let int): int64Field(3, int)
        case .double(let double): doubleField(4, double)
        case .stringArray(let strings): array(strings.map(SpanAttribute.string))
        case .boolArray(let bools): array(bools.map(SpanAttribute.bool))
        case .int32Array(let ints): array(ints.map { .int64(Int64($0)) })
        case .int64Array(let ints): array(ints.map(SpanAttribute.int64))
        case .doubleArray(let doubles): array(doubles.map(SpanAttribute.double))
        case .stringConvertibleArray(let values): array(values.map { .string($0.description) })
        case .stringConvertible(let convertible): stringField(1, convertible.description)
        default: stringField(1, "\(value)")
        }
    }

    /// `common.v1.ArrayValue` in `AnyValue.array_value`.
    private mutating func array(_ values: [SpanAttribute]) {
        message(5) { array in
            for value in values { array.message(1) { $0.anyValue(value) } }
        }
    }
}
