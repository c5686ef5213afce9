#!/usr/bin/env python3
"""The operator's kit against a live local cluster, in about 10 seconds.

Starts cluster/run.sh's cluster (redis-server, the control plane, three gateways, the demo
upstream) and Debian's `prometheus` with cluster/prometheus.yml and cluster/observability/alerts.yml,
drives traffic (accepted, missing and rejected tokens, a revocation and the revoked token used
again, rate-limited requests, a refused admin call, then 502s from a stopped upstream), and checks:

  1. every scrape target in cluster/prometheus.yml is up, and they are exactly run.sh's admin
     listeners (so the file's ports are the cluster's ports, not just valid YAML);
  2. every metric on the /metrics of a real gateway and control plane is documented in
     docs/operations.md, under its role, and every documented one is served (or is marked there as
     appearing with its first event); `promtool check metrics` accepts each exposition;
  3. every query of cluster/observability/grafana-dashboard.json, and every PromQL example in
     docs/operations.md, returns series;
  4. every alert expression in alerts.yml evaluates, its signal (the side left of its one top-level
     comparison) returns series, every selector in it returns series, and Prometheus reports every
     rule healthy.

    cluster/observability/test.py [path/to/portcullis]     (default: $PORTCULLIS_BIN)

Ports: run.sh's defaults shifted by one offset (the first for which all are free); the targets
in prometheus.yml are shifted by the same offset, so they still have to match run.sh's defaults.
Everything started is stopped by PID (run.sh stop; Prometheus by its PID).
"""
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
CLUSTER = os.path.dirname(HERE)
ROOT = os.path.dirname(CLUSTER)
GATEWAYS = 3
# run.sh's defaults; node i's ports add i-1.
DEFAULTS = {"REDIS_PORT": 6390, "CONTROL_PORT": 9000, "CONTROL_ADMIN_PORT": 9001, "UPSTREAM_PORT": 8000,
            "GATEWAY_PORT": 8081, "GATEWAY_ADMIN_PORT": 9101}
# The query range that stands in for Grafana's $__rate_interval.
RATE_INTERVAL = "5m"
# Documented metrics that exist only once their event happened; the row in operations.md says so.
EVENT_MARKER = "appears with its first event"

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print(f"  FAIL {message}")
    return condition


def log(message):
    print(f"[observability] {message}", flush=True)


def port_free(port):
    with socket.socket() as sock:
        # As the servers bind: a port with connections in TIME_WAIT is free to listen on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def all_ports(offset):
    ports = [DEFAULTS[k] + offset for k in ("REDIS_PORT", "CONTROL_PORT", "CONTROL_ADMIN_PORT", "UPSTREAM_PORT")]
    for i in range(GATEWAYS):
        ports += [DEFAULTS["GATEWAY_PORT"] + offset + i, DEFAULTS["GATEWAY_ADMIN_PORT"] + offset + i]
    return ports


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method, url, body=None, headers=None, form=None, auth=None):
    headers = dict(headers or {})
    data = None
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def jwt_claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# ---------------------------------------------------------------------------------------------
# Documentation: the metric tables of docs/operations.md

def documented_metrics():
    """{"gateway": {name: row}, "control": {name: row}} from the tables under '## Metrics'."""
    text = open(os.path.join(ROOT, "docs", "operations.md"), encoding="utf-8").read()
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    tables = {"gateway": {}, "control": {}}
    role = None
    for line in section.splitlines():
        if line.startswith("### "):
            title = line[4:].lower()
            role = "gateway" if title.startswith("gateway") else "control" if title.startswith("control plane") else None
        match = re.match(r"\| `(portcullis_[a-z0-9_]+)", line)
        if match and role:
            tables[role][match.group(1)] = line
    return tables


def exposed_metrics(text):
    return {m.group(1) for m in re.finditer(r"^# TYPE (\S+) \S+$", text, re.M)}


# ---------------------------------------------------------------------------------------------
# PromQL helpers

COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")


def signal_of(expr):
    """The expression left of its last comparison at nesting depth 0 (outside strings)."""
    depth, quote, last, i = 0, None, None, 0
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            for op in COMPARISONS:
                if expr.startswith(op, i):
                    last = i
                    i += len(op) - 1
                    break
        i += 1
    return expr[:last].strip() if last is not None else expr


def selectors_of(expr):
    """Every instant-vector selector (metric name with its matchers) in an expression."""
    found = []
    for match in re.finditer(r"\b(portcullis_[a-z0-9_]+|up)\b(\{[^}]*\})?", expr):
        found.append(match.group(1) + (match.group(2) or ""))
    return found


def grafana_to_promql(expr):
    return expr.replace("$__rate_interval", RATE_INTERVAL).replace("$instance", ".*").replace("$route", ".*")


class Prometheus:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def query(self, expr):
        status, body = http("GET", f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            return None, answer.get("error", f"HTTP {status}")
        return answer["data"]["result"], None

    def get(self, path):
        return json.loads(http("GET", self.base + path)[1])["data"]


# ---------------------------------------------------------------------------------------------

def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORTCULLIS_BIN", os.path.join(ROOT, ".build", "debug", "portcullis"))
    if not os.access(binary, os.X_OK):
        sys.exit(f"no portcullis binary at {binary} (pass its path or set PORTCULLIS_BIN)")
    for tool in ("prometheus", "promtool", "redis-server"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (cluster/setup.sh installs it)")
    offset = next((o for o in range(0, 2000, 100) if all(port_free(p) for p in all_ports(o))), None)
    if offset is None:
        sys.exit("no free set of ports for the cluster")
    ports = {k: v + offset for k, v in DEFAULTS.items()}

    work = tempfile.mkdtemp(prefix="portcullis-observability-")
    cluster_env = dict(os.environ, CLUSTER_DIR=os.path.join(work, "cluster"), GATEWAYS=str(GATEWAYS), PORTCULLIS_BIN=binary,
                       **{k: str(v) for k, v in ports.items()})
    prometheus = None
    started = time.monotonic()
    try:
        # Prometheus with cluster/prometheus.yml: targets shifted by the offset, scraped every second.
        config = yaml.safe_load(open(os.path.join(CLUSTER, "prometheus.yml")))
        config["global"]["scrape_interval"] = "1s"
        config["global"]["evaluation_interval"] = "1s"
        config["rule_files"] = [os.path.join(CLUSTER, rule) for rule in config["rule_files"]]
        for job in config["scrape_configs"]:
            for static in job["static_configs"]:
                static["targets"] = [f"{t.rsplit(':', 1)[0]}:{int(t.rsplit(':', 1)[1]) + offset}" for t in static["targets"]]
        config_file = os.path.join(work, "prometheus.yml")
        yaml.safe_dump(config, open(config_file, "w"))
        prometheus_port = free_port()
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={config_file}", f"--storage.tsdb.path={os.path.join(work, 'tsdb')}",
             f"--web.listen-address=127.0.0.1:{prometheus_port}", "--log.level=warn"],
            stdout=open(os.path.join(work, "prometheus.log"), "w"), stderr=subprocess.STDOUT, start_new_session=True)
        prom = Prometheus(prometheus_port)
        deadline = time.monotonic() + 30
        while True:
            try:
                if http("GET", prom.base + "/-/ready")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or prometheus.poll() is not None:
                sys.exit("prometheus did not become ready (see its log in " + work + ")")
            time.sleep(0.2)

        # Prometheus first: its discovery hands targets to the scrapers only every 5 s.
        log(f"starting the cluster (ports shifted by {offset})")
        subprocess.run([os.path.join(CLUSTER, "run.sh"), "start"], env=cluster_env, check=True, stdout=subprocess.DEVNULL)
        env = dict(line.split("=", 1) for line in open(os.path.join(work, "cluster", "env")).read().split())

        control = f"http://127.0.0.1:{ports['CONTROL_PORT']}"
        control_admin = f"http://127.0.0.1:{ports['CONTROL_ADMIN_PORT']}"
        gateways = [f"http://127.0.0.1:{ports['GATEWAY_PORT'] + i}" for i in range(GATEWAYS)]
        gateway_admins = [f"http://127.0.0.1:{ports['GATEWAY_ADMIN_PORT'] + i}" for i in range(GATEWAYS)]
        admin = {"Authorization": f"Bearer {env['PORTCULLIS_ADMIN_TOKEN']}"}

        def token(scope="orders:read"):
            status, body = http("POST", control + "/oauth2/token", form={"grant_type": "client_credentials", "scope": scope},
                                auth=(env["CLIENT_ID"], env["CLIENT_SECRET"]))
            assert status == 200, f"token endpoint: HTTP {status} {body[:200]!r}"
            return json.loads(body)["access_token"]

        log("driving traffic")
        good, doomed = token(), token()
        for gateway in gateways:
            for _ in range(5):
                check(http("GET", gateway + "/orders/1", headers={"Authorization": f"Bearer {good}"})[0] == 200, f"{gateway}: a valid token passes")
            check(http("GET", gateway + "/public/x")[0] == 200, f"{gateway}: the public route answers")
            check(http("POST", gateway + "/public/x", body={"a": 1})[0] == 200, f"{gateway}: POST on the public route")
            check(http("GET", gateway + "/orders/1")[0] == 401, f"{gateway}: no token, 401")
            check(http("GET", gateway + "/orders/1", headers={"Authorization": "Bearer not.a.token"})[0] == 401, f"{gateway}: a rejected token, 401")
            check(http("GET", gateway + "/orders/1", headers={"Authorization": f"Bearer {doomed}"})[0] == 200, f"{gateway}: the soon revoked token still passes")
            for _ in range(3):
                http("GET", gateway + "/limited/x", headers={"Authorization": f"Bearer {good}"})
        claims = jwt_claims(doomed)
        status, body = http("POST", control_admin + "/v1/revocations?wait=5s", headers=admin,
                            body={"kind": "jti", "value": claims["jti"], "exp": claims["exp"], "reason": "observability test"})
        check(status == 201, f"the revocation is applied by every gateway (HTTP {status} {body[:200]!r})")
        for gateway in gateways:
            check(http("GET", gateway + "/orders/1", headers={"Authorization": f"Bearer {doomed}"})[0] == 401, f"{gateway}: the revoked token is refused")
        check(http("GET", control_admin + "/v1/status", headers={"Authorization": "Bearer wrong"})[0] == 401, "the admin API refuses a wrong token")
        # The upstream goes away: 502s and upstream failures on every gateway.
        upstream_pid = next(int(line.split()[1]) for line in open(os.path.join(work, "cluster", "pids")) if line.startswith("upstream "))
        os.kill(upstream_pid, signal.SIGTERM)
        time.sleep(0.3)
        for gateway in gateways:
            check(http("GET", gateway + "/public/gone")[0] == 502, f"{gateway}: upstream down, 502")

        # Let Prometheus scrape what the traffic left twice more (rate() needs two samples of a
        # series that appeared with it) and evaluate the rules on it.
        traffic_end = time.time()
        deadline = time.monotonic() + 30
        while True:
            scraped, _ = prom.query("min(timestamp(up)) and on () count(up) == %d" % (GATEWAYS + 1))
            if scraped and float(scraped[0]["value"][1]) > traffic_end + 2.5:
                break
            if time.monotonic() > deadline:
                check(False, "Prometheus scraped every target twice after the traffic within 30 s")
                break
            time.sleep(0.5)
        time.sleep(1.5)

        log("1. scrape targets")
        targets = prom.get("/api/v1/targets")["activeTargets"]
        expected = {("portcullis-control", ports["CONTROL_ADMIN_PORT"])} | {("portcullis-gateway", ports["GATEWAY_ADMIN_PORT"] + i) for i in range(GATEWAYS)}
        scraped = {(t["labels"]["job"], int(t["labels"]["instance"].rsplit(":", 1)[1])) for t in targets}
        check(scraped == expected, f"prometheus.yml's targets are run.sh's admin listeners: {sorted(scraped)} vs {sorted(expected)}")
        for target in targets:
            check(target["health"] == "up", f"target {target['labels']['instance']} is up ({target.get('lastError')})")

        log("2. /metrics against docs/operations.md")
        docs = documented_metrics()
        check(len(docs["gateway"]) > 20 and len(docs["control"]) > 10, "operations.md has a gateway and a control-plane metric table")
        expositions = {"gateway": [http("GET", a + "/metrics")[1].decode() for a in gateway_admins],
                       "control": [http("GET", control_admin + "/metrics")[1].decode()]}
        for role, texts in expositions.items():
            served = set().union(*(exposed_metrics(t) for t in texts))
            for name in sorted(served - set(docs[role])):
                check(False, f"{role} serves {name}, which docs/operations.md does not document under its role")
            for name in sorted(set(docs[role]) - served):
                check(EVENT_MARKER in docs[role][name], f"docs/operations.md documents {name} for the {role}, which it does not serve (nor is it marked '{EVENT_MARKER}')")
            for text in texts:
                result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
                check(result.returncode == 0, f"promtool check metrics accepts the {role}'s exposition: {result.stdout}{result.stderr}")
                check('le="1.0"' not in text and 'le="1"' in text, f"the {role}'s histogram bounds are spelled canonically (le=\"1\")")
        info, _ = prom.query("portcullis_build_info")
        nodes = {s["metric"].get("node") for s in info or []}
        check({f"gw-{i + 1}" for i in range(GATEWAYS)} | {"control-1"} <= nodes, f"portcullis_build_info names every node: {nodes}")

        log("3. dashboard queries")
        dashboard = json.load(open(os.path.join(HERE, "grafana-dashboard.json")))
        queries = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
        queries += [(f"variable {v['name']}", re.sub(r"^label_values\((.*), \w+\)$", r"\1", v["definition"]))
                    for v in dashboard["templating"]["list"] if v["type"] == "query"]
        for title, expr in queries:
            result, error = prom.query(grafana_to_promql(expr))
            check(error is None and result, f"dashboard '{title}': {expr} returns series ({error or 'none'})")

        operations = open(os.path.join(ROOT, "docs", "operations.md"), encoding="utf-8").read()
        examples = [line for block in re.findall(r"```promql\n(.*?)```", operations, re.S)
                    for line in block.splitlines() if line.strip() and not line.startswith("#")]
        check(len(examples) >= 10, "operations.md has its PromQL examples")
        for expr in examples:
            result, error = prom.query(expr)
            check(error is None and result, f"operations.md's PromQL {expr} returns series ({error or 'none'})")

        log("4. alert expressions")
        rules = yaml.safe_load(open(os.path.join(HERE, "alerts.yml")))
        alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
        for rule in alerts:
            expr = rule["expr"]
            result, error = prom.query(expr)
            check(error is None, f"alert {rule['alert']}: {expr} evaluates ({error})")
            signal_expr = signal_of(expr)
            check(signal_expr != expr, f"alert {rule['alert']}: one top-level comparison")
            result, error = prom.query(signal_expr)
            check(error is None and result, f"alert {rule['alert']}: its signal {signal_expr} returns series ({error or 'none'})")
            for selector in selectors_of(expr):
                result, error = prom.query(selector)
                check(error is None and result, f"alert {rule['alert']}: {selector} returns series ({error or 'none'})")
        groups = prom.get("/api/v1/rules")["groups"]
        evaluated = [r for g in groups for r in g["rules"]]
        check(len(evaluated) == len(alerts), f"Prometheus loaded all {len(alerts)} rules ({len(evaluated)})")
        for rule in evaluated:
            check(rule["health"] == "ok", f"rule {rule['name']} is healthy ({rule.get('lastError')})")
        log(f"{len(queries)} dashboard queries, {len(alerts)} alerts checked in {time.monotonic() - started:.0f} s")
    finally:
        if prometheus is not None:
            prometheus.terminate()
            try:
                prometheus.wait(timeout=10)
            except subprocess.TimeoutExpired:
                prometheus.kill()
        subprocess.run([os.path.join(CLUSTER, "run.sh"), "stop"], env=cluster_env, stdout=subprocess.DEVNULL)
        if not failures:
            shutil.rmtree(work, ignore_errors=True)
    if failures:
        sys.exit(f"observability: {len(failures)} check(s) failed (logs in {work})")
    print("observability: all checks passed")


if __name__ == "__main__":
    main()
