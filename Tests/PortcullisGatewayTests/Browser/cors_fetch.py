#!/usr/bin/env python3
"""A real browser calling the gateway cross-origin (CORSTests "a real Chromium...").

Serves an empty page on each origin given, opens it in headless Chromium (through
chromium-driver and Selenium) and runs fetch() calls from it against the gateway; prints one
JSON object: {origin: [{"status": n} | {"error": "..."}, ...]}.

    cors_fetch.py GATEWAY_URL TOKEN PAGE_ORIGIN...   (origins like http://127.0.0.1:PORT)
"""
import http.server
import json
import sys
import threading
from urllib.parse import urlparse

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

gateway, token, origins = sys.argv[1], sys.argv[2], sys.argv[3:]


class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<!doctype html><title>page</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


servers = []
for origin in origins:
    url = urlparse(origin)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", url.port), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    servers.append(server)

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]:
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
driver.set_script_timeout(20)

# Each call: a preflighted GET with the token, a plain GET without (a 401 the page may read),
# and a credentialed POST with a JSON body (preflighted for Content-Type).
script = """
const [gateway, token, done] = arguments;
async function call(init) {
  try { const r = await fetch(gateway + '/api/orders', init); return {status: r.status, requestId: r.headers.get('X-Request-Id')}; }
  catch (e) { return {error: String(e)}; }
}
Promise.all([
  call({headers: {'Authorization': 'Bearer ' + token}}),
  call({}),
  call({method: 'POST', credentials: 'include', headers: {'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json'}, body: '{}'}),
]).then(done);
"""
results = {}
try:
    for origin in origins:
        driver.get(origin + "/")
        results[origin] = driver.execute_async_script(script, gateway, token)
finally:
    driver.quit()
    for server in servers:
        server.shutdown()
print(json.dumps(results))
