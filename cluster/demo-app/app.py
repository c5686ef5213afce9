#!/usr/bin/env python3
"""The demo web application: a public OAuth 2.0 client (no secret) of the control plane's built-in
authorization server, using the authorization code grant with PKCE (S256), Python's standard
library only.

It configures itself from the issuer's OpenID Connect discovery document, sends the browser to the
authorization endpoint with a fresh `state` and code challenge, checks `state` and `iss` (RFC 9207)
on the way back, redeems the code with its verifier, then calls the API (/orders/42) through every
gateway with the access token and shows each answer: the upstream's JSON with the identity the
gateway forwarded, or the gateway's refusal.

    app.py --listen 127.0.0.1:8090 --issuer http://127.0.0.1:9000 --client-id demo-app \\
           --gateways http://127.0.0.1:8081,http://127.0.0.1:8082

Sessions (the PKCE verifier, `state`, the tokens) live in this process's memory, keyed by a
random cookie; it is a demo, not a production client.
"""
import argparse
import base64
import hashlib
import html
import http.server
import json
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--listen", required=True, help="host:port")
parser.add_argument("--issuer", required=True)
parser.add_argument("--client-id", required=True)
parser.add_argument("--gateways", required=True, help="comma-separated base URLs")
parser.add_argument("--api-path", default="/orders/42")
parser.add_argument("--scope", default="orders:read")
args = parser.parse_args()
host, port = args.listen.rsplit(":", 1)
base = f"http://{host}:{port}"
redirect_uri = base + "/callback"
gateways = [url.rstrip("/") for url in args.gateways.split(",") if url]
sessions = {}
lock = threading.Lock()
metadata = {}


def discovery():
    """The issuer's metadata, fetched once (the control plane is up before this app starts)."""
    if not metadata:
        with urllib.request.urlopen(args.issuer + "/.well-known/openid-configuration", timeout=10) as response:
            metadata.update(json.load(response))
    return metadata


def new_verifier():
    """A PKCE code verifier: 64 characters of base64url, 384 random bits (RFC 7636 §4.1)."""
    return secrets.token_urlsafe(48)


def challenge_s256(verifier):
    """The S256 code challenge of a verifier (RFC 7636 §4.2)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def call(url, token):
    """GET url with the bearer token: (status, body text, WWW-Authenticate)."""
    request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(), ""
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace"), error.headers.get("WWW-Authenticate", "")
    except OSError as error:
        return 0, str(error), ""


PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}} td,th{{border:1px solid #ccc;padding:.4em;text-align:left;vertical-align:top}}
table{{border-collapse:collapse}} .ok{{color:#070}} .refused{{color:#a00}} pre{{margin:0;white-space:pre-wrap}}</style></head>
<body><h1>Demo shop</h1><p><em>A public OAuth client of {issuer} (client_id {client})</em></p>{body}</body></html>"""


class App(http.server.BaseHTTPRequestHandler):
    def page(self, status, title, body, cookie=None):
        data = PAGE.format(title=html.escape(title), issuer=html.escape(args.issuer), client=html.escape(args.client_id), body=body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if cookie:
            self.send_header("Set-Cookie", f"demo_app={cookie}; Path=/; HttpOnly; SameSite=Lax")
        self.end_headers()
        self.wfile.write(data)

    def redirect(self, location, cookie=None):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        if cookie:
            self.send_header("Set-Cookie", f"demo_app={cookie}; Path=/; HttpOnly; SameSite=Lax")
        self.end_headers()

    def session(self):
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "demo_app":
                with lock:
                    return value, sessions.get(value)
        return None, None

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/healthz":
            return self.page(200, "ok", "<p>ok</p>")
        if url.path == "/":
            return self.page(200, "Demo shop", '<p>Sign in to see your orders.</p><p><a id="sign-in" href="/login">Sign in</a></p>')
        if url.path == "/login":
            return self.login()
        if url.path == "/callback":
            return self.callback(query)
        if url.path == "/orders":
            return self.orders()
        self.page(404, "Not found", "<p>Not found.</p>")

    def login(self):
        """Starts an authorization request: new verifier and state, kept in a new session."""
        verifier, state = new_verifier(), secrets.token_urlsafe(16)
        sid = secrets.token_urlsafe(24)
        with lock:
            sessions[sid] = {"verifier": verifier, "state": state}
        location = discovery()["authorization_endpoint"] + "?" + urllib.parse.urlencode({
            "response_type": "code", "client_id": args.client_id, "redirect_uri": redirect_uri, "scope": args.scope,
            "state": state, "code_challenge": challenge_s256(verifier), "code_challenge_method": "S256"})
        self.redirect(location, cookie=sid)

    def callback(self, query):
        """Checks state and iss, then redeems the code with the PKCE verifier."""
        sid, session = self.session()
        if not session or query.get("state") != session.get("state"):
            return self.page(400, "Sign-in failed", '<p id="error">The sign-in answer does not match this browser\'s request (state).</p>')
        if query.get("iss") != discovery()["issuer"]:
            return self.page(400, "Sign-in failed", '<p id="error">The sign-in answer names another issuer (iss).</p>')
        if "code" not in query:
            return self.page(400, "Sign-in failed", f'<p id="error">Not signed in: {html.escape(query.get("error", "no code"))}.</p>')
        form = urllib.parse.urlencode({"grant_type": "authorization_code", "code": query["code"], "redirect_uri": redirect_uri,
                                       "client_id": args.client_id, "code_verifier": session["verifier"]}).encode()
        try:
            with urllib.request.urlopen(urllib.request.Request(discovery()["token_endpoint"], data=form), timeout=10) as response:
                tokens = json.load(response)
        except urllib.error.HTTPError as error:
            return self.page(502, "Sign-in failed", f'<p id="error">The token endpoint refused the code: {error.code} {html.escape(error.read().decode(errors="replace"))}</p>')
        with lock:
            session.pop("verifier", None)
            session.pop("state", None)
            session["access_token"] = tokens["access_token"]
        self.redirect("/orders")

    def orders(self):
        """Calls the API through every gateway with the session's access token and shows each answer."""
        _, session = self.session()
        if not session or "access_token" not in session:
            return self.redirect("/login")
        rows = []
        for number, gateway in enumerate(gateways, start=1):
            status, body, challenge = call(gateway + args.api_path, session["access_token"])
            if status == 200:
                answer = json.loads(body)
                shown = "<pre>" + html.escape(json.dumps({key: answer.get(key) for key in ("subject", "tenant", "roles", "client_id", "scopes")}, indent=1)) + "</pre>"
            else:
                shown = html.escape(challenge or body[:200])
            rows.append(f'<tr id="gw-{number}" data-status="{status}"><td>gw-{number}<br><small>{html.escape(gateway)}</small></td>'
                        f'<td class="{"ok" if status == 200 else "refused"}">{status}</td><td>{shown}</td></tr>')
        self.page(200, "Your orders", '<p>GET ' + html.escape(args.api_path) + ' through each gateway, with your access token:</p>'
                  '<table id="calls"><tr><th>Gateway</th><th>Status</th><th>What the upstream saw (or the gateway\'s answer)</th></tr>'
                  + "".join(rows) + '</table><p><a id="again" href="/orders">Call again</a></p>')

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    http.server.ThreadingHTTPServer((host, int(port)), App).serve_forever()
