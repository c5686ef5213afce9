#!/usr/bin/env python3
"""The demo's backend: answers every request with JSON showing the identity headers the
gateway forwarded, so the demo (and a curious user) can see what an upstream learns."""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({
            "service": "demo-orders",
            "path": self.path,
            "subject": self.headers.get("X-Auth-Subject"),
            "client_id": self.headers.get("X-Auth-Client-Id"),
            "scopes": self.headers.get("X-Auth-Scopes"),
            "issuer": self.headers.get("X-Auth-Issuer"),
            "tenant": self.headers.get("X-Auth-Tenant"),
            "roles": self.headers.get("X-Auth-Roles"),
            "request_id": self.headers.get("X-Request-Id"),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    host, port = sys.argv[1].rsplit(":", 1)
    ThreadingHTTPServer((host, int(port)), Echo).serve_forever()
