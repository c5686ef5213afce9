#!/usr/bin/env python3
"""The two halves of cluster/bench/console.sh.

    console-load.py write ADMIN_URL TOKEN COUNT      # COUNT jti revocations, 10 000 per batch call
    console-load.py time ADMIN_URL TOKEN NODES N     # waits for NODES gateways in step, signs in,
                                                     # times N GETs of /console/cluster and searches
"""
import http.client
import json
import re
import statistics
import sys
import time
import urllib.parse

command, admin, token = sys.argv[1:4]
host = urllib.parse.urlparse(admin)


def connection():
    return http.client.HTTPConnection(host.hostname, host.port, timeout=120)


def api(conn, method, path, body=None):
    headers = {"Authorization": "Bearer " + token}
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    if response.status >= 300:
        sys.exit(f"{method} {path}: {response.status} {data[:300]!r}")
    return json.loads(data)


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


if command == "write":
    count = int(sys.argv[4])
    conn = connection()
    exp = int(time.time()) + 3 * 3600
    started = time.monotonic()
    written = 0
    while written < count:
        size = min(10_000, count - written)
        items = [{"kind": "jti", "value": f"bench-{written + i}", "exp": exp} for i in range(size)]
        api(conn, "POST", "/v1/revocations/batch", json.dumps({"revocations": items}))
        written += size
    print(f"wrote {written} revocations in {time.monotonic() - started:.1f} s")
    sys.exit(0)

nodes, n = int(sys.argv[4]), int(sys.argv[5])
conn = connection()
deadline = time.monotonic() + 900
while True:
    state = api(conn, "GET", "/v1/nodes")
    live = state["nodes"]
    in_step = [node for node in live if node["revocation_lag"]["sequences"] == 0 and node["applied_sequence"] == state["revocation_sequence"]]
    if len(live) >= nodes and len(in_step) == len(live):
        break
    if time.monotonic() > deadline:
        sys.exit(f"only {len(in_step)} of {len(live)} live gateways in step after 15 minutes")
    time.sleep(1)
status = api(conn, "GET", "/v1/status")
print(f"{len(live)} gateways in step at sequence {state['revocation_sequence']}; in force: {status['revocations']['in_force']}")

# Sign in as a browser would: the form's cookie and CSRF token, then the token; keep the session's
# cookie (the answer also clears the form's).
conn.request("GET", "/console/sign-in")
page = conn.getresponse()
body = page.read().decode()
cookie = page.getheader("Set-Cookie").split(";")[0]
csrf = re.search(r'name="csrf_token" value="([^"]+)"', body).group(1)
conn.request("POST", "/console/sign-in", body=urllib.parse.urlencode({"csrf_token": csrf, "token": token}),
             headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
answer = conn.getresponse()
answer.read()
if answer.status != 303:
    sys.exit(f"sign-in answered {answer.status}")
cookie = next(value.split(";")[0] for name, value in answer.getheaders()
              if name.lower() == "set-cookie" and value.startswith("portcullis_console="))


def timed(path, count):
    times = []
    for _ in range(count):
        started = time.perf_counter()
        conn.request("GET", path, headers={"Cookie": cookie})
        response = conn.getresponse()
        text = response.read().decode()
        times.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            sys.exit(f"GET {path}: {response.status} {text[:300]}")
    return times, text


timed("/console/cluster", 5)  # warm-up
times, text = timed("/console/cluster", n)
rows = len(re.findall(r'<tr id="node-', text))
if rows != nodes:
    sys.exit(f"the cluster page lists {rows} gateways, expected {nodes}")
print(f"RESULT cluster_page_median_ms {statistics.median(times):.2f}")
print(f"RESULT cluster_page_p99_ms {percentile(times, 0.99):.2f}")
print(f"RESULT cluster_page_max_ms {max(times):.2f}")
print(f"(GET /console/cluster, {n} times, {rows} gateways listed, {len(text)} bytes)")
for label, path in [("search_jti_miss", "/console/revocations?kind=jti&value=no-such-token"),
                    ("search_subject_miss", "/console/revocations?kind=subject&value=nobody"),
                    ("search_jti_hit_last", "/console/revocations?kind=jti&value=bench-999999")]:
    times, _ = timed(path, 5)
    print(f"RESULT {label}_median_ms {statistics.median(times):.2f}  (of 5)")
