#!/usr/bin/env python3
"""An HTTP/1.1 upstream on Python's http.server that, like its SimpleHTTPRequestHandler and many
static-file handlers, answers GET, HEAD, DELETE, PROPFIND and PURGE without reading a request body: what such a
request carries stays on the connection and is read as the start of the next request.

    body_ignoring_upstream.py PORT

Answers every request 200 with JSON: method, path, and the Authorization, Connection and
X-Swallow fields it got. A path holding /slow waits 2 s first. Prints "ready", then one line per
request: "request METHOD PATH port=CLIENT_PORT".
"""
import http.server
import json
import socketserver
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, with_body=True):
        print(f"request {self.command} {self.path} port={self.client_address[1]}", flush=True)
        if "/slow" in self.path:
            time.sleep(2)
        body = json.dumps({
            "method": self.command,
            "path": self.path,
            "authorization": self.headers.get("Authorization"),
            "connection": self.headers.get("Connection"),
            "swallowed": self.headers.get("X-Swallow"),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    do_GET = answer
    do_DELETE = answer
    do_PROPFIND = answer
    do_PURGE = answer

    def do_HEAD(self):
        self.answer(with_body=False)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


server = Server(("127.0.0.1", int(sys.argv[1])), Handler)
print("ready", flush=True)
server.serve_forever()
