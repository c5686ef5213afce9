#!/usr/bin/env python3
"""The peer benchmark: wrk over loopback against the backend alone, nginx and HAProxy as plain
reverse proxies, HAProxy validating JWTs (RS256, ES256) with its own converters, and, when
SUBJECT_CMD is set, a gateway under test ("the subject") — in one run, pinned the same way,
with the same CPU accounting. Run through run-peers.sh; docs/benchmarks.md ("The peer
harness") describes the knobs, the configurations and the output.

PROTO=h2 runs the HTTP/2 variant instead: the proxies listen for HTTP/2 over TLS (a throw-away
certificate made for the run), h2load replaces wrk in each of the H2_SHAPES (connections x
streams), and the checks go over HTTP/2 with curl. The backend speaks HTTP/1.1 in both.

Order of a run: keys and tokens (fixtures.py); the backend; the accept/reject checks of both
HAProxy JWT peers and of the subject (checks.py), whose failures mark the rows; then for each
configuration: start its proxy, one sanity request, a warm-up, REPEATS measured wrk runs (each
after waiting for a quiet machine), stop it. The table and the ratios come last (report.py).
"""
import datetime
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import checks
import fixtures
import procs
import report

HERE = os.path.dirname(os.path.abspath(__file__))


def knob(name, default):
    value = os.environ.get(name, "")
    return value if value != "" else default


DURATION = knob("DURATION", "10s")
WARMUP = knob("WARMUP", "2s")
CONNS = knob("CONNS", "64")
THREADS = knob("THREADS", "1")
REPEATS = int(knob("REPEATS", "3"))
NTOKENS = int(knob("NTOKENS", "1000"))
LOAD_CORE = knob("LOAD_CORE", "0")
PROXY_CORE = knob("PROXY_CORE", "1")
QUIET_BUSY = float(knob("QUIET_BUSY", "15"))
QUIET_MAX = float(knob("QUIET_MAX", "120"))
BASE_PORT = int(knob("BASE_PORT", "18080"))
SUBJECT_CMD = knob("SUBJECT_CMD", "")
SUBJECT_SETUP = knob("SUBJECT_SETUP", "")
SUBJECT_READY = knob("SUBJECT_READY", "")
SUBJECT_PUBLIC_PATH = knob("SUBJECT_PUBLIC_PATH", "")
SUBJECT_PATH = knob("SUBJECT_PATH", "/")
SUBJECT_PORT = int(knob("SUBJECT_PORT", "18090"))
SUBJECT_START_TIMEOUT = float(knob("SUBJECT_START_TIMEOUT", "30"))
KEEP_RUN = knob("KEEP_RUN", "0") == "1"
CHECKS_ONLY = knob("CHECKS_ONLY", "0") == "1"
PROTO = knob("PROTO", "h1")
H2_SHAPES = knob("H2_SHAPES", "1x100 64x10").split()
H2_CIPHER = knob("H2_CIPHER", "TLS_AES_128_GCM_SHA256")
# PROTO=h2: keep each run's per-request log (start µs, status, duration µs) in the output folder
# as h2load/CONFIG@SHAPE.RUN.log (cluster/bench/h2-latency-phases.py reads them).
KEEP_H2_LOGS = knob("KEEP_H2_LOGS", "0") == "1"

BACKEND = f"127.0.0.1:{BASE_PORT}"

# name: (server, token mode, algorithm of the tokens). Servers: None = wrk to the backend itself.
CONFIGS = {
    "direct": (None, "none", None),
    "direct-rotate": (None, "rotate", "RS256"),  # control: what the token-rotating wrk script costs
    "nginx": ("nginx", "none", None),
    "haproxy": ("haproxy", "none", None),
    "haproxy-hdr": ("haproxy", "single", "RS256"),  # control: the token's bytes, no validation
    "haproxy-claims-rs256": ("haproxy-claims-rs256", "single", "RS256"),  # control: all but the signature
    "haproxy-jwt-rs256": ("haproxy-jwt-rs256", "single", "RS256"),
    "haproxy-jwt-rs256-rotate": ("haproxy-jwt-rs256", "rotate", "RS256"),
    "haproxy-jwt-es256": ("haproxy-jwt-es256", "single", "ES256"),
    "haproxy-jwt-es256-rotate": ("haproxy-jwt-es256", "rotate", "ES256"),
    "subject-hdr-none": ("subject", "none", None),
    "subject-rs256": ("subject", "single", "RS256"),
    "subject-rs256-rotate": ("subject", "rotate", "RS256"),
    "subject-es256": ("subject", "single", "ES256"),
    "subject-es256-rotate": ("subject", "rotate", "ES256"),
}

# PROTO=h2: the same servers listening for HTTP/2 over TLS; each runs in every H2_SHAPES shape,
# its rows named <configuration>@<connections>x<streams>.
H2_CONFIGS = {
    "h2-nginx": ("nginx", "none", None),
    "h2-haproxy": ("haproxy", "none", None),
    "h2-haproxy-jwt-rs256": ("haproxy-jwt-rs256", "single", "RS256"),
    "h2-subject-hdr-none": ("subject", "none", None),
    "h2-subject-rs256": ("subject", "single", "RS256"),
}

PORTS = {"nginx": BASE_PORT + 1, "haproxy": BASE_PORT + 2, "haproxy-jwt-rs256": BASE_PORT + 3,
         "haproxy-jwt-es256": BASE_PORT + 4, "haproxy-claims-rs256": BASE_PORT + 5, "subject": SUBJECT_PORT}


def known_configs():
    return H2_CONFIGS if PROTO == "h2" else CONFIGS


def default_configs():
    if PROTO == "h2":
        subject = ["h2-subject-hdr-none"] if SUBJECT_CMD and SUBJECT_PUBLIC_PATH else []
        return ["h2-nginx", "h2-haproxy"] + subject + ["h2-haproxy-jwt-rs256"] + (["h2-subject-rs256"] if SUBJECT_CMD else [])
    peers = "direct direct-rotate nginx haproxy haproxy-hdr haproxy-claims-rs256".split()
    if not SUBJECT_CMD:
        return peers + [c for c in CONFIGS if c.startswith("haproxy-jwt")]
    # Each subject configuration right after the peer it is compared with, so both see the same minutes.
    out = peers[:4] + (["subject-hdr-none"] if SUBJECT_PUBLIC_PATH else []) + peers[4:]
    for alg in ("rs256", "es256"):
        for suffix in ("", "-rotate"):
            out += [f"haproxy-jwt-{alg}{suffix}", f"subject-{alg}{suffix}"]
    return out


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def loud(*lines):
    bar = "!" * 78
    print("\n" + bar, *(f"!!! {line}" for line in lines), bar + "\n", sep="\n", file=sys.stderr, flush=True)


def wrk_figures(text):
    """req/s, p50 and p99 in ms, non-2xx responses and socket errors from wrk --latency output."""
    def ms(value):
        for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
            if value.endswith(unit):
                return float(value[:-len(unit)]) * factor
        return float(value)
    out = {"rps": 0.0, "p50_ms": 0.0, "p99_ms": 0.0, "non2xx": 0, "errors": 0}
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] in ("50%", "99%"):
            out["p50_ms" if words[0] == "50%" else "p99_ms"] = ms(words[1])
        elif line.startswith("Requests/sec:"):
            out["rps"] = float(words[1])
        elif "Non-2xx" in line:
            out["non2xx"] = int(words[-1])
        elif line.strip().startswith("Socket errors:"):
            out["errors"] = sum(int(w.rstrip(",")) for w in words[3::2])
    return out


def h2load_figures(text, log_lines):
    """req/s from h2load's output; p50 and p99 in ms and the non-2xx responses (failed streams,
    status -1, included) from its --log-file lines (start µs, status, duration µs); errors: its
    errored and timed-out requests; `h2`: whether the connections negotiated HTTP/2; `cipher`:
    the TLS cipher suite they negotiated."""
    out = {"rps": 0.0, "p50_ms": 0.0, "p99_ms": 0.0, "non2xx": 0, "errors": 0,
           "h2": "Application protocol: h2" in text, "cipher": ""}
    for line in text.splitlines():
        words = line.replace(",", "").split()
        if line.startswith("Cipher:") and len(words) > 1:
            out["cipher"] = words[1]
        elif line.startswith("finished in") and len(words) > 3:
            out["rps"] = float(words[3])
        elif line.startswith("requests:"):
            counts = dict(zip(words[2::2], (int(w) for w in words[1::2])))
            out["errors"] = counts.get("errored", 0) + counts.get("timeout", 0)
    durations, non2xx = [], 0
    for line in log_lines:
        fields = line.split("\t")
        if len(fields) >= 3:
            status = int(fields[1])
            non2xx += not 200 <= status < 300
            durations.append(int(fields[2]))
    durations.sort()
    if durations:
        rank = lambda q: durations[max(0, math.ceil(q * len(durations)) - 1)] / 1000.0  # noqa: E731 (nearest rank)
        out["p50_ms"], out["p99_ms"] = rank(0.50), rank(0.99)
    out["non2xx"] = non2xx
    return out


def h2_shape(shape):
    """'64x10' -> ('64', '10'): connections and concurrent streams per connection."""
    conns, _, streams = shape.partition("x")
    if not (conns.isdigit() and streams.isdigit()):
        raise ValueError(f"H2_SHAPES: '{shape}' is not <connections>x<streams>, e.g. 64x10")
    return conns, streams


def render_template(text, mode, values):
    """A config template for the given modes (space-separated): a line ending in `# when: <modes>`
    is kept (without that tag) only when one of its modes is given; `@NAME@` becomes values[NAME]."""
    lines = []
    wanted = set(mode.split())
    for line in text.splitlines():
        body, tagged, modes = line.partition("# when:")
        if not tagged:
            lines.append(line)
        elif wanted & set(modes.split()):
            lines.append(body.rstrip())
    text = "\n".join(lines) + "\n"
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    return text


class Harness:
    """One run: its output folder (OUT), its private runtime folder (keys, tokens, rendered
    configs), the servers it started and the rows it measured."""

    def __init__(self, configs):
        self.configs = configs
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.out = knob("OUT", os.path.join(os.environ.get("TMPDIR", "/tmp"), "portcullis-peers", stamp))
        self.run_dir = tempfile.mkdtemp(prefix="portcullis-peers-run.")  # private keys: removed at exit
        for folder in ("h2load" if PROTO == "h2" else "wrk", "conf", "logs"):
            os.makedirs(os.path.join(self.out, folder), exist_ok=True)
        os.makedirs(os.path.join(self.run_dir, "tmp"))
        self.servers = {}
        self.rows = []
        self.notes = {}  # server kind -> note for its rows (failed checks)
        self.subject_usable = bool(SUBJECT_CMD)
        self.cert = os.path.join(self.run_dir, "tls", "cert.pem")  # PROTO=h2 only

    def url(self, port, path):
        return f"{'https' if PROTO == 'h2' else 'http'}://127.0.0.1:{port}{path}"

    def status(self, url, token, timeout=5.0):
        """checks.status_of, over HTTP/2 (curl, the run's certificate trusted) with PROTO=h2."""
        if PROTO == "h2":
            return checks.h2_status_of(url, token, self.cert, timeout)
        return checks.status_of(url, token, timeout)

    def make_certificate(self):
        """PROTO=h2: a throw-away self-signed P-256 certificate for 127.0.0.1 (cert.pem, key.pem,
        and haproxy.pem, both in one file) in the runtime folder; the certificate goes to OUT."""
        folder = os.path.join(self.run_dir, "tls")
        os.makedirs(folder)
        key, cert = os.path.join(folder, "key.pem"), self.cert
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", cert], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        with open(os.path.join(folder, "haproxy.pem"), "w") as f:
            for part in (cert, key):
                with open(part) as p:
                    f.write(p.read())
        shutil.copy(cert, os.path.join(self.out, "cert.pem"))

    # ---- servers
    def render(self, template, name, **values):
        """conf/<template> filled in for this run, written to the runtime folder and copied to OUT."""
        with open(os.path.join(HERE, "conf", template)) as f:
            text = f.read()
        mode = values.pop("JWT", "")
        if template != "nginx-backend.conf":
            mode += " " + PROTO
        values.update(RUN=self.run_dir, BACKEND=BACKEND, ISS=fixtures.ISSUER, AUD=fixtures.AUDIENCE)
        path = os.path.join(self.run_dir, name)
        with open(path, "w") as f:
            f.write(render_template(text, mode, values))
        shutil.copy(path, os.path.join(self.out, "conf", name))
        return path

    def start(self, name, argv, core, port, ready=None, env=None):
        """Starts a server and waits until it answers; returns it, or None with the reason logged."""
        if procs.port_open(port):
            loud(f"port {port} already accepts connections before {name} was started: another process "
                 f"holds it (set BASE_PORT / SUBJECT_PORT)")
            return None
        server = procs.Server(name, argv, core, os.path.join(self.out, "logs", name + ".log"), env)
        self.servers[name] = server
        deadline = time.monotonic() + (SUBJECT_START_TIMEOUT if name == "subject" else 10)
        while time.monotonic() < deadline:
            if not server.alive():
                break
            if (self.status(self.url(port, ready), "", 2) == 200) if ready else procs.port_open(port):
                return server
            time.sleep(0.1)
        with open(server.log_path, errors="replace") as f:
            tail = f.read()[-2000:]
        loud(f"{name} did not become ready on port {port} ({'it exited' if not server.alive() else 'timeout'}); "
             f"its log ({server.log_path}) ends:", *tail.splitlines()[-15:])
        self.stop(name)
        return None

    def stop(self, name):
        server = self.servers.pop(name, None)
        if server:
            server.stop()

    def stop_all(self):
        for name in list(self.servers):
            self.stop(name)

    def start_peer(self, kind):
        port = PORTS[kind]
        if kind == "nginx":
            conf = self.render("nginx-proxy.conf", "nginx-proxy.conf", PORT=port)
            argv = ["nginx", "-p", self.run_dir, "-e", "stderr", "-c", conf]
        else:
            alg = "ES256" if "es256" in kind else "RS256"
            jwt = "claims" if "claims" in kind else ("jwt" if "jwt" in kind else "")
            conf = self.render("haproxy.cfg", kind + ".cfg", PORT=port, ALG=alg, JWT=jwt,
                               PUBKEY=os.path.join(self.run_dir, "keys", alg.lower() + ".pub.pem"))
            argv = ["haproxy", "-db", "-f", conf]
        return self.start(kind, argv, PROXY_CORE, port)

    def subject_values(self):
        keys = os.path.join(self.run_dir, "keys")
        values = {"PORT": str(SUBJECT_PORT), "BACKEND": BACKEND, "KEYS": keys, "JWKS": os.path.join(keys, "jwks.json"),
                  "ISS": fixtures.ISSUER, "AUD": fixtures.AUDIENCE}
        if PROTO == "h2":
            values.update(TLS_CERT=self.cert, TLS_KEY=os.path.join(self.run_dir, "tls", "key.pem"))
        return values

    def subject_command(self, template):
        """The template with its @NAME@ placeholders filled in, and the environment with BENCH_NAME set."""
        values = self.subject_values()
        for key, value in values.items():
            template = template.replace(f"@{key}@", value)
        return template, dict(os.environ, **{"BENCH_" + key: value for key, value in values.items()})

    def start_subject(self):
        command, env = self.subject_command(SUBJECT_CMD)
        return self.start("subject", ["bash", "-c", command], PROXY_CORE, SUBJECT_PORT, SUBJECT_READY or None, env)

    # ---- checks
    def run_checks(self):
        cases = os.path.join(self.run_dir, "tokens", "cases.tsv")
        with open(os.path.join(self.out, "checks.txt"), "w") as report_file:
            peers = (("haproxy-jwt-rs256", "RS256"),) + ((("haproxy-jwt-es256", "ES256"),) if PROTO == "h1" else ())
            for kind, alg in peers:
                if not self.start_peer(kind):
                    self.notes[kind] = "NOSTART"
                    continue
                log(f"accept/reject checks: {kind}")
                print(f"== {kind} (as configured: alg, iss, aud, exp, signature) ==", file=report_file)
                if checks.run(checks.load_cases(cases, alg), self.url(PORTS[kind], "/"), peer=True, out=report_file,
                              fetch=self.status):
                    self.notes[kind] = "CHECKS-FAILED"
                self.stop(kind)
            if SUBJECT_CMD:
                self.subject_checks(cases, report_file)
        with open(os.path.join(self.out, "checks.txt")) as f:
            sys.stderr.write(f.read())
        for kind, note in self.notes.items():
            loud(f"{kind}: {note} (see {self.out}/checks.txt); its rows are marked and not comparable.")

    def subject_checks(self, cases, report_file):
        if SUBJECT_SETUP:
            command, env = self.subject_command(SUBJECT_SETUP)
            log(f"subject setup: {command}")
            setup = subprocess.run(["bash", "-c", command], env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            with open(os.path.join(self.out, "logs", "subject-setup.log"), "w") as f:
                f.write(setup.stdout)
            if setup.returncode != 0:
                loud(f"SUBJECT_SETUP failed (exit {setup.returncode}); the subject's configurations are skipped:",
                     *setup.stdout.splitlines()[-15:])
                self.subject_usable = False
                return
        if not self.start_subject():
            self.notes["subject"] = "NOSTART"
            self.subject_usable = False
            return
        log("accept/reject checks: subject")
        base = self.url(SUBJECT_PORT, "")
        print(f"== subject (tokens to {SUBJECT_PATH}) ==", file=report_file)
        if checks.run(checks.load_cases(cases), base + SUBJECT_PATH,
                      public_url=base + SUBJECT_PUBLIC_PATH if SUBJECT_PUBLIC_PATH else None, out=report_file,
                      fetch=self.status):
            self.notes["subject"] = "CHECKS-FAILED"
        self.stop("subject")

    def control_check(self):
        """The checks must catch a proxy that validates nothing: plain HAProxy, scored as a JWT peer."""
        if not self.start_peer("haproxy"):
            self.notes["control"] = "NOSTART"
            return
        with open(os.devnull, "w") as sink:
            failures = checks.run(checks.load_cases(os.path.join(self.run_dir, "tokens", "cases.tsv"), "RS256"),
                                  self.url(PORTS["haproxy"], "/"), peer=True, out=sink, fetch=self.status)
        self.stop("haproxy")
        log(f"control: plain HAProxy (no validation) fails {failures} of the RS256 peer checks")
        if failures == 0:
            self.notes["control"] = "the checks passed a proxy that validates nothing"

    # ---- load
    def measure(self, config, repeat, port, path, mode, alg, note, shape=None):
        """One load run (wrk, or with `shape` h2load) and its row; "warmup" runs record nothing."""
        url = self.url(port, path)
        duration = WARMUP if repeat == "warmup" else DURATION
        log_file = os.path.join(self.run_dir, "tmp", "h2load.log") if shape and repeat != "warmup" else None
        if shape:
            conns, streams = h2_shape(shape)
            argv = ["taskset", "-c", LOAD_CORE, "h2load", "-t", THREADS, "-c", conns, "-m", streams, "-D", duration,
                    "--tls13-ciphers", H2_CIPHER] + (["--log-file", log_file] if log_file else [])
        else:
            argv = ["taskset", "-c", LOAD_CORE, "wrk", "-t", THREADS, "-c", CONNS, "-d", duration, "--latency"]
        env = None
        tokens = os.path.join(self.run_dir, "tokens", (alg or "").lower())
        if mode == "single":
            with open(tokens + ".token") as f:
                argv += ["-H", "Authorization: Bearer " + f.read().strip()]
        elif mode == "rotate":
            argv += ["-s", os.path.join(HERE, "rotate-tokens.lua")]
            env = dict(os.environ, TOKENS_FILE=tokens + ".tokens")
        argv.append(url)
        if repeat == "warmup":
            subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return
        waited, busy = procs.wait_quiet(QUIET_BUSY, QUIET_MAX)
        if busy >= QUIET_BUSY:
            log(f"machine still {busy:.0f} % busy after {waited:.0f} s; measuring anyway")
        trees = {"backend": self.servers["backend"].pid}
        kind = known_configs()[config][0]
        if kind:
            trees["proxy"] = self.servers[kind].pid
        label = f"{config}@{shape}" if shape else config
        wrk_out = os.path.join(self.out, "h2load" if shape else "wrk", f"{label}.{repeat}.txt")
        cpu = procs.run_accounted(argv, wrk_out, trees, env)
        with open(wrk_out) as f:
            if shape:
                kept = wrk_out[:-len(".txt")] + ".log" if KEEP_H2_LOGS else None
                figures = h2load_figures(f.read(), self.read_log(log_file, kept))
            else:
                figures = wrk_figures(f.read())
        measured = cpu["trees"].get("proxy", cpu["trees"]["backend"])
        row = {"config": label, "tokens": mode, "run": str(repeat), "rps": f"{figures['rps']:.0f}",
               "p50_ms": f"{figures['p50_ms']:.3f}", "p99_ms": f"{figures['p99_ms']:.3f}",
               "non2xx": str(figures["non2xx"]), "errors": str(figures["errors"]),
               "cpu0": f"{cpu['cores'].get('cpu0', 0):.0f}", "cpu1": f"{cpu['cores'].get('cpu1', 0):.0f}",
               "proxy": f"{cpu['trees']['proxy']:.0f}" if "proxy" in cpu["trees"] else "-",
               "backend": f"{cpu['trees']['backend']:.0f}", "wrk": f"{cpu['load']:.0f}",
               "foreign": f"{cpu['foreign']:.0f}",
               "us_per_req": f"{measured * 1e4 / figures['rps']:.1f}" if figures["rps"] > 0 else "0"}
        notes = [note] if note else []
        if cpu["rc"] != 0:
            notes.append(f"{'h2load' if shape else 'wrk'}-exit-{cpu['rc']}")
        if shape and not figures["h2"]:
            notes.append("not-h2")
        if shape and figures["cipher"] != H2_CIPHER:
            notes.append(f"cipher-{figures['cipher'] or 'none'}")
        if kind and not self.servers[kind].alive():
            notes.append(f"{kind}-exited")
        row["note"] = ",".join(notes) or "-"
        self.rows.append(row)
        log(f"    {label} {mode} run {repeat}: {row['rps']} req/s, p99 {row['p99_ms']} ms, "
            f"{row['us_per_req']} us/req, non-2xx {row['non2xx']}, errors {row['errors']}, foreign {row['foreign']} %")

    @staticmethod
    def read_log(path, keep=None):
        """h2load's --log-file lines; the file is then moved to `keep`, or removed (it can hold
        millions of lines)."""
        try:
            with open(path) as f:
                return f.readlines()
        except OSError:
            return []
        finally:
            if os.path.exists(path):
                if keep:
                    shutil.move(path, keep)
                else:
                    os.remove(path)

    def path_of(self, config):
        """The path a configuration's requests go to; None (logged) when it cannot run."""
        kind, mode, _ = known_configs()[config]
        if kind == "subject" and not self.subject_usable:
            log(f"skip {config}: no usable subject (SUBJECT_CMD unset, or its setup or start failed)")
            return None
        if kind != "subject":
            return "/"
        if mode == "none" and not SUBJECT_PUBLIC_PATH:
            log(f"skip {config}: SUBJECT_PUBLIC_PATH is not set")
            return None
        return SUBJECT_PUBLIC_PATH if mode == "none" else SUBJECT_PATH

    def smoke(self, config, requests=200):
        """PROTO=h2, checks only: h2load sends `requests` through the configuration (2 connections x
        10 streams), each must be answered 2xx over HTTP/2; a failure is noted like a failed check."""
        kind, mode, alg = H2_CONFIGS[config]
        path = self.path_of(config)
        if path is None:
            return
        server = self.start_subject() if kind == "subject" else self.start_peer(kind)
        if not server:
            self.notes[config] = "NOSTART"
            return
        log_file = os.path.join(self.run_dir, "tmp", "h2load.log")
        argv = ["h2load", "-n", str(requests), "-c", "2", "-m", "10", "--log-file", log_file]
        if mode == "single":
            with open(os.path.join(self.run_dir, "tokens", alg.lower() + ".token")) as f:
                argv += ["-H", "Authorization: Bearer " + f.read().strip()]
        try:
            stdout = subprocess.run(argv + [self.url(PORTS[kind], path)], capture_output=True, text=True,
                                    timeout=30).stdout
        except subprocess.TimeoutExpired:  # the child is killed; what it logged is judged below
            stdout = ""
        lines = self.read_log(log_file)
        figures = h2load_figures(stdout, lines)
        self.stop(kind)
        ok = figures["h2"] and len(lines) == requests and figures["non2xx"] == 0
        log(f"smoke: {config}: {len(lines)} of {requests} requests answered, {figures['non2xx']} not 2xx, "
            f"{'HTTP/2' if figures['h2'] else 'NOT HTTP/2'}")
        if not ok:
            self.notes[config] = "SMOKE-FAILED"

    def bench(self, config):
        kind, mode, alg = known_configs()[config]
        path = self.path_of(config)
        if path is None:
            return
        log(f"config {config}")
        if kind:
            server = self.start_subject() if kind == "subject" else self.start_peer(kind)
            if not server:
                return
        port = PORTS[kind] if kind else BASE_PORT
        note = self.notes.get(kind, "")
        token = ""
        if alg:
            with open(os.path.join(self.run_dir, "tokens", alg.lower() + ".token")) as f:
                token = f.read().strip()
        status = self.status(self.url(port, path), token)
        if not 200 <= status < 300:
            log(f"WARNING: {config}: the benchmark's own request got HTTP {status}")
            note = ",".join(filter(None, [note, f"sanity-{status}"]))
        for shape in (H2_SHAPES if PROTO == "h2" else [None]):
            if WARMUP not in ("0", "0s"):
                self.measure(config, "warmup", port, path, mode, alg, note, shape)
            for repeat in range(1, REPEATS + 1):
                self.measure(config, repeat, port, path, mode, alg, note, shape)
        if kind:
            self.stop(kind)

    # ---- the run
    def write_env(self):
        def version(argv):
            result = subprocess.run(argv, capture_output=True, text=True)
            return (result.stdout + result.stderr).strip().splitlines()[0] if result.stdout + result.stderr else "?"
        with open(os.path.join(self.out, "env.txt"), "w") as f:
            f.write(f"date: {datetime.datetime.now(datetime.timezone.utc).isoformat()}\n")
            f.write(f"host: {' '.join(os.uname())}, {os.cpu_count()} cores, load {os.getloadavg()}\n")
            load = ["h2load", "--version"] if PROTO == "h2" else ["wrk", "-v"]
            for argv in (["haproxy", "-v"], ["nginx", "-v"], load, ["openssl", "version"]):
                f.write(version(argv) + "\n")
            h2 = ("PROTO", "H2_SHAPES", "H2_CIPHER") if PROTO == "h2" else ()
            for name in ("DURATION", "WARMUP", "CONNS", "THREADS", "REPEATS", "NTOKENS", "LOAD_CORE", "PROXY_CORE",
                         "QUIET_BUSY", "QUIET_MAX", "BASE_PORT", "SUBJECT_CMD", "SUBJECT_SETUP", "SUBJECT_READY",
                         "SUBJECT_PUBLIC_PATH", "SUBJECT_PATH", "SUBJECT_PORT") + h2:
                value = globals()[name]
                f.write(f"{name}={' '.join(value) if isinstance(value, list) else value}\n")
            f.write(f"CONFIGS={' '.join(self.configs)}\n")

    def run(self):
        log(f"results -> {self.out}")
        self.write_env()
        subprocess.run([sys.executable, os.path.join(HERE, "fixtures.py"), self.run_dir,
                        "--count", "1" if CHECKS_ONLY else str(NTOKENS)],
                       check=True, stdout=sys.stderr)
        for name in ("jwks.json", "rs256.pub.pem", "es256.pub.pem"):
            shutil.copy(os.path.join(self.run_dir, "keys", name), self.out)
        if PROTO == "h2":
            self.make_certificate()
        conf = self.render("nginx-backend.conf", "nginx-backend.conf", PORT=BASE_PORT)
        if not self.start("backend", ["nginx", "-p", self.run_dir, "-e", "stderr", "-c", conf], LOAD_CORE, BASE_PORT):
            sys.exit(1)
        self.run_checks()
        if CHECKS_ONLY:
            self.control_check()
            if PROTO == "h2":
                for config in self.configs:
                    self.smoke(config)
            failed = sorted(kind for kind, note in self.notes.items())
            log(f"checks only: {'FAILED: ' + ' '.join(failed) if failed else 'every scored case as expected'}")
            sys.exit(1 if failed else 0)
        for config in self.configs:
            self.bench(config)
        results = os.path.join(self.out, "results.tsv")
        with open(results, "w") as f:
            f.write("\t".join(report.COLUMNS) + "\n")
            f.writelines("\t".join(row[c] for c in report.COLUMNS) + "\n" for row in self.rows)
        if PROTO == "h2":
            heading = (f"== h2load -t{THREADS} -D {DURATION}, shapes {' '.join(H2_SHAPES)} (connections x streams), "
                       f"TLS 1.3 {H2_CIPHER}; h2load and the backend on core {LOAD_CORE}, the proxy or subject on core "
                       f"{PROXY_CORE}; p50/p99 from h2load's per-request log ==")
            ratios = report.ratios_h2(self.rows)
        else:
            heading = (f"== wrk -t{THREADS} -c{CONNS} -d{DURATION}; wrk and the backend on core "
                       f"{LOAD_CORE}, the proxy or subject on core {PROXY_CORE} ==")
            ratios = report.ratios(self.rows)
        text = (report.table(self.rows, heading)
                + f"\n\n== medians and ratios (over up to {REPEATS} repeats) ==\n" + ratios + "\n")
        with open(os.path.join(self.out, "table.txt"), "w") as f:
            f.write(text)
        print("\n" + text, flush=True)
        for kind, note in self.notes.items():
            loud(f"{kind}: {note} (see {self.out}/checks.txt); its rows are marked and not comparable.")
        log(f"done: table, results.tsv, checks, {'h2load' if PROTO == 'h2' else 'wrk'} outputs, configs and logs in {self.out}")

    def cleanup(self):
        self.stop_all()
        if KEEP_RUN:
            log(f"runtime folder (keys, tokens) kept: {self.run_dir}")
        else:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def main():
    if PROTO not in ("h1", "h2"):
        sys.exit(f"PROTO must be h1 or h2, not '{PROTO}'")
    for shape in H2_SHAPES:
        try:
            h2_shape(shape)
        except ValueError as error:
            sys.exit(str(error))
    configs = knob("CONFIGS", "").split() or default_configs()
    unknown = [c for c in configs if c not in known_configs()]
    if unknown:
        sys.exit(f"unknown configuration(s) {' '.join(unknown)} for PROTO={PROTO}; known: {' '.join(known_configs())}")
    harness = Harness(configs)
    # SIGTERM and SIGHUP end the run like Ctrl-C does, through the cleanup below.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    try:
        harness.run()
    except KeyboardInterrupt:
        log("interrupted; stopping what was started")
        sys.exit(130)
    finally:
        harness.cleanup()


if __name__ == "__main__":
    main()
