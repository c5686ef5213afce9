@testable import PortcullisGateway
import Foundation
import PortcullisTestSupport
import Testing
import Tracing
import W3CTraceContext

/// The hand-written OTLP encoding: protobuf's wire format on known vectors, and a whole export
/// request read back by the OpenTelemetry project's own protobuf classes (PyPI `opentelemetry-proto`).
@Suite("tracing: the OTLP export's protobuf encoding")
struct OTLPTraceRequestTests {
    @Test("varints, strings, doubles, negative int64s and nested messages are written as protobuf's encoding specifies")
    func wireVectors() {
        var writer = ProtobufWriter()
        writer.varint(1)
        writer.varint(300)
        #expect(writer.bytes == [0x01, 0xAC, 0x02])
        writer = ProtobufWriter()
        writer.stringField(2, "hi")
        #expect(writer.bytes == [0x12, 0x02, 0x68, 0x69])
        writer = ProtobufWriter()
        writer.int64Field(3, -1)
        #expect(writer.bytes == [0x18] + Array(repeating: 0xFF, count: 9) + [0x01])
        writer = ProtobufWriter()
        writer.doubleField(4, 1.5)
        #expect(writer.bytes == [0x21, 0, 0, 0, 0, 0, 0, 0xF8, 0x3F])
        writer = ProtobufWriter()
        writer.fixed64Field(7, 0x0102_0304_0506_0708)
        #expect(writer.bytes == [0x39, 8, 7, 6, 5, 4, 3, 2, 1])
        // A nested message's length prefix takes as many bytes as its length needs: 1, 2, 3.
        for (count, prefix) in [(5, [0x05]), (200, [0xC8, 0x01]), (20_000, [0xA0, 0x9C, 0x01])] as [(Int, [UInt8])] {
            writer = ProtobufWriter()
            writer.message(1) { $0.bytesField(2, Array(repeating: 0x61, count: count - (count < 128 ? 2 : count < 16_384 ? 3 : 4))) }
            writer.varintField(5, 1)
            #expect(writer.bytes.prefix(1 + prefix.count) == [0x0A] + prefix[...], "\(count)")
            #expect(writer.bytes.count == 1 + prefix.count + count + 2 && writer.bytes.suffix(2) == [0x28, 0x01], "\(count)")
        }
    }

    @Test("an export request is read back whole by opentelemetry-proto: resource, scope, ids, parent, kind, times, typed attributes, status")
    func decodedByReference() throws {
        let traceID = TraceID.random(), parent = SpanID.random(), request = SpanID.random(), child = SpanID.random()
        var attributes = SpanAttributes()
        attributes["s"] = "/ünïcode/path"
        attributes["i"] = 502
        attributes["b"] = true
        attributes["d"] = 0.25
        attributes["neg"] = -7
        attributes["list"] = ["a", "b"]
        let spans = [
            FinishedSpan(name: "portcullis.request", kind: .server, traceID: traceID, spanID: request, parentSpanID: parent,
                         traceState: "v=1", start: 1_700_000_000_123_456_789, end: 1_700_000_000_223_456_789, attributes: attributes, isError: true),
            FinishedSpan(name: "portcullis.upstream", kind: .client, traceID: traceID, spanID: child, parentSpanID: request,
                         traceState: nil, start: 1_700_000_000_133_456_789, end: 1_700_000_000_213_456_789, attributes: [:], isError: false),
        ]
        let body = OTLPTraceRequest.encode(spans: spans, resource: [("service.name", "edge"), ("service.instance.id", "n1")], scopeVersion: "9.9")
        let script = """
        import json, sys
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
        from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
        request = ExportTraceServiceRequest()
        request.ParseFromString(bytes.fromhex(sys.stdin.read().strip()))
        def value(v):
            kind = v.WhichOneof("value")
            return [value(x) for x in v.array_value.values] if kind == "array_value" else getattr(v, kind)
        out = []
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out.append({"resource": {kv.key: value(kv.value) for kv in rs.resource.attributes}, "scope": [ss.scope.name, ss.scope.version],
                                "name": s.name, "kind": Span.SpanKind.Name(s.kind), "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                                "parent": s.parent_span_id.hex(), "trace_state": s.trace_state, "start": s.start_time_unix_nano,
                                "end": s.end_time_unix_nano, "status": Status.StatusCode.Name(s.status.code),
                                "attributes": {kv.key: [kv.value.WhichOneof("value"), value(kv.value)] for kv in s.attributes}})
        print(json.dumps(out))
        """
        let result = try runCommand("/usr/bin/env", ["python3", "-c", script], stdin: body.map { String(format: "%02x", $0) }.joined())
        #expect(result.status == 0, "\(result.stderr)")
        let decoded = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]])
        #expect(decoded.count == 2)
        let first = try #require(decoded.first), second = try #require(decoded.last)
        #expect(first["resource"] as? [String: String] == ["service.name": "edge", "service.instance.id": "n1"])
        #expect(first["scope"] as? [String] == ["portcullis", "9.9"])
        #expect(first["name"] as? String == "portcullis.request" && first["kind"] as? String == "SPAN_KIND_SERVER")
        #expect(first["trace_id"] as? String == traceID.description && first["span_id"] as? String == request.description)
        #expect(first["parent"] as? String == parent.description && first["trace_state"] as? String == "v=1")
        #expect(first["start"] as? UInt64 == 1_700_000_000_123_456_789 && first["end"] as? UInt64 == 1_700_000_000_223_456_789)
        #expect(first["status"] as? String == "STATUS_CODE_ERROR")
        let decodedAttributes = try #require(first["attributes"] as? [String: [Any]])
        #expect(decodedAttributes["s"]?.last as? String == "/ünïcode/path" && decodedAttributes["s"]?.first as? String == "string_value")
        #expect(decodedAttributes["i"]?.last as? Int == 502 && decodedAttributes["i"]?.first as? String == "int_value")
        #expect(decodedAttributes["neg"]?.last as? Int == -7)
        #expect(decodedAttributes["b"]?.last as? Bool == true && decodedAttributes["b"]?.first as? String == "bool_value")
        #expect(decodedAttributes["d"]?.last as? Double == 0.25 && decodedAttributes["d"]?.first as? String == "double_value")
        #expect(decodedAttributes["list"]?.last as? [String] == ["a", "b"])
        #expect(second["kind"] as? String == "SPAN_KIND_CLIENT" && second["parent"] as? String == request.description)
        #expect(second["status"] as? String == "STATUS_CODE_UNSET" && second["trace_state"] as? String == "")
        #expect((second["attributes"] as? [String: Any])?.isEmpty == true)
    }
}
