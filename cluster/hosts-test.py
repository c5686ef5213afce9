#!/usr/bin/env python3
"""Scenarios on the multi-host test bed (cluster/hosts.sh), as a client, an operator and an
attacker on the network see it: over the hosts' addresses, through TLS, with the real processes.

  cluster/hosts-test.py WORK [SCENARIO…]       run scenarios (default: all), exit 1 on a failure
  cluster/hosts-test.py WORK measure [N]       propagation figures only (N changes, default 300)

Scenarios:
  propagation  a revocation reaches all 3 gateways across hosts and each refuses the token
  acl          the gateways' Redis user cannot write a revocation, a key set or publish an event:
               refused by Redis, in its ACL LOG and counted in INFO stats; the nodes' Sentinel
               user can only look the primary up; node certificates fail the Redis CA
  wrong-ca     a gateway host that trusts another CA refuses the Redis server, logs it once per
               backoff step, counts it, and is not ready
  link-cut     a gateway host's cable pulled for longer than max_staleness: stale in metrics, fails
               closed and not ready; after the cable is back it resyncs and refuses every token
               revoked meanwhile before it reports ready
  failover     the Redis primary killed under load: Sentinel promotes the replica; 0 failed requests
               with valid tokens, 0 acknowledged revocations lost (every one enforced on every
               gateway), every gateway and the control plane on the new primary within 5 s
"""
import base64
import http.client
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTS = os.path.join(ROOT, "cluster", "hosts.sh")


def load_env(work):
    env = {}
    with open(os.path.join(work, "bed.env")) as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("=")
            env[key] = value.strip("'")
    return env


REDIS = {"redis-1": "10.231.0.11", "redis-2": "10.231.0.12", "redis-3": "10.231.0.13"}


class Bed:
    def __init__(self, work):
        self.work = work
        self.env = load_env(work)
        self.tls = ssl.create_default_context(cafile=self.env["PCX_CA"])
        self.gateways = self.env["PCX_GATEWAYS"].split()

    # --- HTTP ---------------------------------------------------------------------------------
    def call(self, url, method="GET", body=None, headers=None, timeout=15):
        u = urllib.parse.urlsplit(url)
        conn = http.client.HTTPSConnection(u.hostname, u.port, context=self.tls, timeout=timeout)
        try:
            data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
            h = dict(headers or {})
            if body is not None and "Content-Type" not in h:
                h["Content-Type"] = "application/json"
            conn.request(method, u.path + ("?" + u.query if u.query else ""), body=data, headers=h)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def token(self):
        creds = base64.b64encode(f'{self.env["PCX_CLIENT_ID"]}:{self.env["PCX_CLIENT_SECRET"]}'.encode()).decode()
        status, body = self.call(self.env["PCX_CONTROL"] + "/oauth2/token", "POST", b"grant_type=client_credentials",
                                 {"Authorization": "Basic " + creds, "Content-Type": "application/x-www-form-urlencoded"})
        check(status == 200, f"token endpoint answered {status}: {body[:200]}")
        return json.loads(body)["access_token"]

    @staticmethod
    def jti(token):
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]

    def admin(self, method, path, body=None, timeout=15):
        status, raw = self.call(self.env["PCX_ADMIN"] + path, method, body,
                                {"Authorization": "Bearer " + self.env["PCX_ADMIN_TOKEN"]}, timeout=timeout)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, {"raw": raw.decode(errors="replace")}

    def revoke(self, jti, wait=None, timeout=15):
        return self.admin("POST", "/v1/revocations" + (f"?wait={wait}" if wait else ""), {"kind": "jti", "value": jti}, timeout)

    def request(self, gateway, token, timeout=10):
        status, _ = self.call(gateway + "/orders/1", headers={"Authorization": "Bearer " + token}, timeout=timeout)
        return status

    # --- the hosts ----------------------------------------------------------------------------
    def hosts(self, *args, check_status=True):
        r = subprocess.run([HOSTS, args[0], self.work, *args[1:]], capture_output=True, text=True, timeout=120)
        if check_status and r.returncode != 0:
            raise Failure(f"hosts.sh {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def on(self, host, *command, timeout=20):
        return subprocess.run(["ip", "netns", "exec", f"pcx-{host}", *command], capture_output=True, text=True, timeout=timeout)

    def local_get(self, host, path):
        """GET on a host's own loopback admin listener (metrics and probes never leave the host)."""
        r = self.on(host, "curl", "-s", "-w", "\n%{http_code}", "--max-time", "5", f"http://127.0.0.1:9901{path}")
        body, _, code = r.stdout.rpartition("\n")
        return int(code or 0), body

    def gateway_on_host(self, host, token):
        """A request to a gateway from its own host (reachable while its cable is out)."""
        address = {"gw-1": self.gateways[0], "gw-2": self.gateways[1], "gw-3": self.gateways[2]}[host]
        r = self.on(host, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--cacert", self.env["PCX_CA"],
                    "-H", "Authorization: Bearer " + token, address + "/orders/1")
        return int(r.stdout or 0)

    def redis_cli(self, host, *args, user=None, password=None):
        cmd = ["redis-cli", "--no-auth-warning", "-h", REDIS[host], "-p", "6379"]
        if self.env["PCX_TLS"] == "1":
            cmd += ["--tls", "--cacert", self.env["PCX_REDIS_CA"]]
        if user:
            cmd += ["--user", user, "--pass", password]
        r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=20)
        return (r.stdout + r.stderr).strip()

    def primary_host(self):
        address = self.primary()
        return next(name for name, a in REDIS.items() if a == address)

    def sentinel_cli(self, *args):
        """redis-cli to sent-1 with `args` (credentials first)."""
        r = subprocess.run(["redis-cli", "--no-auth-warning", "-h", "10.231.0.21", "-p", "26379"]
                           + (["--tls", "--cacert", self.env["PCX_REDIS_CA"]] if self.env["PCX_TLS"] == "1" else []) + list(args),
                           capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip()

    def primary(self):
        r = subprocess.run(["redis-cli", "--no-auth-warning", "-h", "10.231.0.21", "-p", "26379", "-a", self.env["PCX_SENTINEL_PASSWORD"]]
                           + (["--tls", "--cacert", self.env["PCX_REDIS_CA"]] if self.env["PCX_TLS"] == "1" else [])
                           + ["SENTINEL", "get-master-addr-by-name", "portcullis"], capture_output=True, text=True, timeout=10)
        return r.stdout.split()[0] if r.stdout.split() else None


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def eventually(what, condition, timeout=10.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (OSError, http.client.HTTPException, subprocess.SubprocessError):
            pass
        time.sleep(interval)
    raise Failure(f"not within {timeout}s: {what}")


def metric(text, name):
    """The value of an unlabelled sample, or the sum over a metric's labelled samples."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return total if seen else None


# --- scenarios ------------------------------------------------------------------------------------
def propagation(bed):
    for _ in range(5):
        token = bed.token()
        for gw in bed.gateways:
            check(bed.request(gw, token) == 200, f"{gw} refused a valid token")
        status, body = bed.revoke(bed.jti(token), wait="5s")
        check(status == 201, f"revocation answered {status}: {body}")
        p = body["propagation"]
        check(p["complete"] and p["applied"] == 3 and p["live_nodes"] == 3, f"not applied on all 3 gateways: {p}")
        for gw in bed.gateways:
            check(bed.request(gw, token) == 401, f"{gw} still accepts a revoked token")
    print("  5 revocations applied on all 3 gateways across hosts (each then refused the token on every gateway)")


def acl(bed):
    pw = bed.env["PCX_GATEWAY_PASSWORD"]
    operator = {"user": "pcx-operator", "password": bed.env["PCX_OPERATOR_PASSWORD"]}
    host = bed.primary_host()
    bed.redis_cli(host, "ACL", "LOG", "RESET", **operator)
    attempts = [
        ("a forged revocation event", ["PUBLISH", "portcullis:rev:events", '{"forged": true}']),
        ("a rolled-back revocation head", ["SET", "portcullis:rev:head", "forged"]),
        ("a log entry", ["ZADD", "portcullis:rev:log", "1", "forged"]),
        ("the log deleted", ["DEL", "portcullis:rev:log"]),
        ("a key set", ["SET", "portcullis:keys:set:builtin", "forged"]),
        ("a key-set event", ["PUBLISH", "portcullis:keys:events", "forged"]),
    ]
    for what, command in attempts:
        reply = bed.redis_cli(host, *command, user="portcullis-gateway", password=pw)
        check("NOPERM" in reply, f"the gateway user could write {what}: {command[0]} answered {reply!r}")
    # ACL LOG is Redis's record and count of refusals: one entry per (user, reason, object), with
    # a count. redis-cli prints it flat, one field name or value per line.
    fields = bed.redis_cli(host, "ACL", "LOG", "100", **operator).splitlines()
    entries, entry = [], {}
    for name, value in zip(fields[0::2], fields[1::2]):
        if name == "count" and entry:
            entries.append(entry)
            entry = {}
        entry[name] = value
    if entry:
        entries.append(entry)
    mine = [e for e in entries if e.get("username") == "portcullis-gateway"]
    counted = sum(int(e.get("count", 0)) for e in mine)
    check(counted >= len(attempts), f"ACL LOG counted {counted} refusals of the gateway user for {len(attempts)} attempts: {entries}")
    objects = sorted({e.get("object") for e in mine})
    print(f"  {len(attempts)} writes as the gateway user refused (NOPERM); ACL LOG counted {counted} ({', '.join(objects)})")
    # What a gateway host holds for the Sentinels may look the primary up and nothing else: with
    # the Sentinels' admin password it re-pointed them at a Redis of its own, which took the
    # control plane's AUTH (an attacker review). Nor does its certificate pass as a Redis server's.
    node = ["--user", "portcullis-node", "--pass", bed.env["PCX_SENTINEL_NODE_PASSWORD"]]
    check(bed.sentinel_cli(*node, "SENTINEL", "get-master-addr-by-name", "portcullis").split()[:1] == [bed.primary()],
          "the nodes' Sentinel user cannot look the primary up")
    for command in (["SENTINEL", "REMOVE", "portcullis"], ["SENTINEL", "MONITOR", "evil", "10.231.0.31", "6379", "1"],
                    ["SENTINEL", "SET", "portcullis", "down-after-milliseconds", "1"]):
        reply = bed.sentinel_cli(*node, *command)
        check("NOPERM" in reply, f"the nodes' Sentinel user could run {' '.join(command[:2])}: {reply!r}")
    for host in ("gw-1", "control"):
        verify = subprocess.run(["openssl", "verify", "-CAfile", bed.env["PCX_REDIS_CA"], os.path.join(bed.work, "materials", host + ".pem")],
                                capture_output=True, text=True, timeout=10)
        check(verify.returncode != 0, f"{host}'s certificate verifies under the Redis CA")
    print("  the nodes' Sentinel user: the primary's address, NOPERM for REMOVE, MONITOR and SET; node certificates fail the Redis CA")


def wrong_ca(bed):
    """A fourth gateway on the client host with the wrong Redis CA."""
    work = bed.work
    src = os.path.join(work, "hosts", "gw-1", "etc", "portcullis")
    dst = os.path.join(work, "hosts", "client", "etc", "portcullis")
    subprocess.run(["rm", "-rf", dst], check=True)
    subprocess.run(["mkdir", "-p", os.path.dirname(dst)], check=True)
    subprocess.run(["cp", "-a", src, dst], check=True)
    subprocess.run(["cp", bed.env["PCX_WRONG_CA"], os.path.join(dst, "certs", "redis-ca.pem")], check=True)
    materials = os.path.join(work, "materials")
    subprocess.run(["cp", os.path.join(materials, "client.pem"), os.path.join(dst, "certs", "gateway.pem")], check=True)
    subprocess.run(["cp", os.path.join(materials, "client.key"), os.path.join(dst, "secrets", "gateway.key")], check=True)
    with open(os.path.join(dst, "gateway.yaml")) as f:
        config = f.read().replace(src, dst).replace("listen: 10.231.0.41:8443", "listen: 10.231.0.50:8443")
    with open(os.path.join(dst, "gateway.yaml"), "w") as f:
        f.write(config)
    envs = dict(line.strip().split("=", 1) for line in open(os.path.join(dst, "secrets", "gateway.env")) if "=" in line)
    log_path = os.path.join(work, "log", "gw-wrong-ca.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["ip", "netns", "exec", "pcx-client", bed.env["PCX_BINARY"], "gateway", "--config",
                                 os.path.join(dst, "gateway.yaml"), "--node-id", "gw-wrong-ca"],
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **envs})
    try:
        def failures():
            code, text = bed.local_get("client", "/metrics")
            return metric(text, 'portcullis_redis_connect_failures_total{kind="tls"}') or 0
        eventually("the wrong-CA gateway counts TLS failures", lambda: failures() >= 2, timeout=30)
        code, body = bed.local_get("client", "/readyz")
        check(code == 503, f"the wrong-CA gateway reports ready: {code} {body}")
        token = bed.token()
        status = bed.request("https://10.231.0.50:8443", token)
        # It has no key set and no revocation state: the token must not pass (401 for want of the
        # key, or 503 for want of fresh state).
        check(status in (401, 503), f"the wrong-CA gateway answered {status} to a valid token (it holds no cluster state)")
        with open(log_path) as f:
            text = f.read()
        lines = [l for l in text.splitlines() if "certificate" in l.lower() or "tls" in l.lower()]
        check(lines, f"no TLS error logged: {text[-500:]}")
        count = failures()
        check(len(lines) <= count + 1, f"{len(lines)} log lines for {count} failures: not once per backoff step")
        print(f"  wrong CA: {int(count)} TLS failures counted, {len(lines)} logged, /readyz {code}, valid token → {status}")
        print(f"    e.g. {lines[0][:200]}")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def link_cut(bed):
    host = "gw-3"
    valid = bed.token()
    first = bed.gateway_on_host(host, valid)
    check(first == 200, f"gw-3 refused a valid token before the cut: {first}")
    staleness_limit = 5.0
    bed.hosts("link", host, "down")
    cut = time.monotonic()
    revoked = []
    try:
        for _ in range(3):
            t = bed.token()
            status, body = bed.revoke(bed.jti(t), wait="2s")
            check(status in (201, 202), f"revocation during the cut answered {status}: {body}")
            revoked.append(t)
        # Before max_staleness: still serving from its last state.
        served = bed.gateway_on_host(host, valid)
        if time.monotonic() - cut < staleness_limit:
            check(served == 200, f"gw-3 answered {served} before max_staleness")
        eventually("gw-3 reports itself stale in metrics",
                   lambda: (metric(bed.local_get(host, "/metrics")[1], "portcullis_revocation_staleness_seconds") or 0) > staleness_limit,
                   timeout=15)
        check(bed.gateway_on_host(host, valid) == 503, "gw-3 did not fail closed past max_staleness")
        code, body = bed.local_get(host, "/readyz")
        check(code == 503, f"gw-3 reports ready while failing closed: {code} {body}")
        held = time.monotonic() - cut
    finally:
        bed.hosts("link", host, "up")
    back = time.monotonic()
    eventually("gw-3 ready again", lambda: bed.local_get(host, "/readyz")[0] == 200, timeout=30, interval=0.02)
    ready_after = time.monotonic() - back
    for t in revoked:
        check(bed.gateway_on_host(host, t) == 401, "gw-3 reported ready but accepts a token revoked during the cut")
    check(bed.gateway_on_host(host, valid) == 200, "gw-3 refuses a valid token after resyncing")
    print(f"  cable out {held:.1f}s: stale in metrics, 503 and not ready; back: ready after {ready_after:.2f}s with all "
          f"{len(revoked)} revocations of the cut enforced")


def failover(bed):
    old = bed.primary()
    check(old == "10.231.0.11", f"expected redis-1 as primary, Sentinel says {old}")
    replicas = ("10.231.0.12", "10.231.0.13")
    valid = bed.token()
    tokens = [bed.token() for _ in range(30)]
    stop = threading.Event()
    results = {"ok": 0, "failed": 0, "errors": []}
    lock = threading.Lock()

    def load(gateway):
        u = urllib.parse.urlsplit(gateway)
        conn = None
        while not stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPSConnection(u.hostname, u.port, context=bed.tls, timeout=10)
                conn.request("GET", "/orders/1", headers={"Authorization": "Bearer " + valid})
                r = conn.getresponse()
                r.read()
                with lock:
                    if r.status == 200:
                        results["ok"] += 1
                    else:
                        results["failed"] += 1
                        results["errors"].append(f"{gateway}: {r.status}")
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    results["failed"] += 1
                    results["errors"].append(f"{gateway}: {e!r}")
                conn = None
            time.sleep(0.005)

    acknowledged, refused = [], 0
    threads = [threading.Thread(target=load, args=(gw,), daemon=True) for gw in bed.gateways for _ in range(2)]
    for t in threads:
        t.start()
    kill_at = None
    switched_at = None
    try:
        time.sleep(1)
        # The revocations double as probes: each waits up to 1 s for the gateways, so the first
        # one sent after the switch that is durable and applied on all 3 shows everyone moved.
        first_after = None
        for i, t in enumerate(tokens):
            if i == 8:
                subprocess.run(["kill", "-KILL", open(os.path.join(bed.work, "pid", "redis-1")).read().strip()], check=True)
                kill_at = time.monotonic()
            sent = time.monotonic()
            try:
                status, body = bed.revoke(bed.jti(t), wait="1s", timeout=10)
            except (OSError, http.client.HTTPException):
                status, body = 0, None
            if status in (201, 202):  # durable (202: not yet applied everywhere within the wait)
                acknowledged.append(t)
                if switched_at is not None and sent >= switched_at and first_after is None \
                        and status == 201 and body["propagation"]["applied"] == 3:
                    first_after = time.monotonic()
            else:
                refused += 1
            if kill_at and switched_at is None and bed.primary() in replicas:
                switched_at = time.monotonic()
                # The old primary comes back (as systemd's Restart= would bring it) and Sentinel
                # turns it into a replica of the new one.
                bed.hosts("start", "redis-1")
            time.sleep(0.2)
        eventually("Sentinel promotes a replica", lambda: bed.primary() in replicas, timeout=20)
        if switched_at is None:
            switched_at = time.monotonic()
            bed.hosts("start", "redis-1")
        last = None
        while first_after is None and time.monotonic() < switched_at + 5:
            try:
                status, body = bed.revoke(f"probe-{time.time()}", wait="1s", timeout=5)
                last = (status, body)
                if status == 201 and body["propagation"]["applied"] == 3:
                    first_after = time.monotonic()
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
            time.sleep(0.1)
        check(first_after is not None and first_after - switched_at <= 5,
              f"the control plane and the gateways were not all on the new primary within 5 s of the switch; last probe: {last}")
        probe_ok = first_after
        time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    check(results["failed"] == 0, f"{results['failed']} failed requests with a valid token: {results['errors'][:5]}")
    for t in acknowledged:
        for gw in bed.gateways:
            check(bed.request(gw, t) == 401, f"an acknowledged revocation was lost: {gw} accepts its token")
        status, _ = bed.admin("GET", "/v1/revocations?kind=jti&value=" + bed.jti(t))
        check(status == 200, f"listing revocations answered {status}")
    print(f"  primary killed under load: switch after {switched_at - kill_at:.2f}s, all on the new primary "
          f"{probe_ok - switched_at:.2f}s after the switch; {results['ok']} requests, 0 failed; "
          f"{len(acknowledged)} revocations acknowledged (all enforced on 3 gateways), {refused} refused while no replica confirmed")


# --- measurement ----------------------------------------------------------------------------------
def measure(bed, count):
    per_change, per_node, missing = [], {}, 0
    for i in range(count):
        status, body = bed.revoke(f"measure-{os.getpid()}-{i}", wait="5s")
        check(status == 201, f"revocation answered {status}: {body}")
        nodes = body["propagation"]["nodes"]
        if any(n["latency_ms"] is None for n in nodes):
            time.sleep(0.1)
            status, again = bed.admin("GET", "/v1/revocations/" + body["id"])
            nodes = again["propagation"]["nodes"] if status == 200 else nodes
        latencies = [n["latency_ms"] for n in nodes if n["latency_ms"] is not None]
        if len(latencies) < 3:
            missing += 1
            continue
        per_change.append(max(latencies))
        for n in nodes:
            per_node.setdefault(n["id"], []).append(n["latency_ms"])
        time.sleep(0.02)
    per_change.sort()

    def pct(values, p):
        values = sorted(values)
        return values[min(len(values) - 1, max(0, int(round(p / 100 * len(values) + 0.5)) - 1))]
    print(f"propagation to all 3 gateways over {len(per_change)} changes (TLS {'on' if bed.env['PCX_TLS'] == '1' else 'off'}, "
          f"one-way delay {bed.env['PCX_DELAY_MS']} ms): p50 {pct(per_change, 50):.2f} ms, p90 {pct(per_change, 90):.2f} ms, "
          f"p99 {pct(per_change, 99):.2f} ms, max {per_change[-1]:.2f} ms; {missing} changes without every node's live measurement")
    for node, values in sorted(per_node.items()):
        print(f"  {node}: p50 {statistics.median(values):.2f} ms, p99 {pct(values, 99):.2f} ms")


SCENARIOS = {"propagation": propagation, "acl": acl, "wrong-ca": wrong_ca, "link-cut": link_cut, "failover": failover}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    bed = Bed(sys.argv[1])
    if len(sys.argv) > 2 and sys.argv[2] == "measure":
        measure(bed, int(sys.argv[3]) if len(sys.argv) > 3 else 300)
        return
    names = sys.argv[2:] or list(SCENARIOS)
    failed = []
    for name in names:
        print(f"hosts-test: {name}")
        started = time.monotonic()
        try:
            SCENARIOS[name](bed)
            print(f"hosts-test: ok: {name} ({time.monotonic() - started:.1f}s)")
        except Failure as e:
            print(f"hosts-test: FAIL: {name}: {e}")
            failed.append(name)
    if failed:
        print(f"hosts-test: failed: {' '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
