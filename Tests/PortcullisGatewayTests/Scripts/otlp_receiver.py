#!/usr/bin/env python3
"""An OTLP/HTTP trace receiver for the gateway's tracing tests: decodes each export with the
OpenTelemetry project's own protobuf classes (PyPI `opentelemetry-proto`) and appends what it
read to a JSON-lines file, which the Swift test asserts on.

    otlp_receiver.py PORT OUTPUT [CERT KEY]

With CERT and KEY (PEM files) it serves HTTPS instead of HTTP.

Serves POST /v1/traces on 127.0.0.1:PORT (`application/x-protobuf`, optionally gzip), prints
`ready` once listening. Per export it writes one line
`{"export": PATH, "spans": N, "content_type", "authorization"}` (the request's fields), then one
line per span:
  {"name", "kind", "trace_id", "span_id", "parent_span_id" (hex, "" for a root), "trace_state",
   "start", "end" (ns since the epoch), "attributes": {key: typed value},
   "status": "unset"|"ok"|"error", "resource": {key: value}, "scope": name}
Anything it cannot decode is answered 400 and written as {"error": ...}.
"""
import gzip
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                     ExportTraceServiceResponse)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

LOCK = threading.Lock()


def value(any_value):
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in any_value.kvlist_value.values}
    if kind == "bytes_value":
        return any_value.bytes_value.hex()
    return getattr(any_value, kind) if kind else None


def attributes(pairs):
    return {kv.key: value(kv.value) for kv in pairs}


STATUS = {Status.STATUS_CODE_UNSET: "unset", Status.STATUS_CODE_OK: "ok", Status.STATUS_CODE_ERROR: "error"}


class Handler(BaseHTTPRequestHandler):
    output = None

    def log_message(self, *args):
        pass

    def write(self, lines):
        with LOCK, open(self.output, "a") as out:
            for line in lines:
                out.write(json.dumps(line, sort_keys=True) + "\n")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
        except Exception as error:  # noqa: BLE001 - any decode failure is the sender's fault
            self.write([{"error": repr(error)}])
            self.send_response(400)
            self.end_headers()
            return
        lines = []
        for resource_spans in request.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    lines.append({
                        "name": span.name,
                        "kind": Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_").lower(),
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "trace_state": span.trace_state,
                        "start": span.start_time_unix_nano,
                        "end": span.end_time_unix_nano,
                        "attributes": attributes(span.attributes),
                        "status": STATUS.get(span.status.code, str(span.status.code)),
                        "resource": resource,
                        "scope": scope_spans.scope.name,
                    })
        self.write([{"export": self.path, "spans": len(lines), "content_type": self.headers.get("Content-Type"),
                     "authorization": self.headers.get("Authorization")}] + lines)
        if Handler.drip:
            # A collector that answers 200 and then drips its body, a byte every 2 s, for a minute.
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for _ in range(30):
                    self.wfile.write(b"1\r\n\x00\r\n")
                    self.wfile.flush()
                    time.sleep(2)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
            return
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def main():
    Handler.drip = "--drip" in sys.argv
    if Handler.drip:
        sys.argv.remove("--drip")
    port, Handler.output = int(sys.argv[1]), sys.argv[2]
    open(Handler.output, "a").close()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    if len(sys.argv) > 4:
        import ssl
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[3], sys.argv[4])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
