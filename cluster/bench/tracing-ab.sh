#!/usr/bin/env bash
# What tracing costs, in the peer harness (cluster/bench/peers; RS256, one token, HTTP/1.1): one
# gateway binary run with `tracing` off and on at 1 % sampling, exporting over OTLP/HTTP to a
# local sink (a Python server that takes each export and answers 200 without decoding it), and,
# given a second binary built without tracing, that one as the baseline of "off". The sides are
# alternated round by round so that all see the same machine load; prints each run's line, then
# the medians and the ratios.
#   cluster/bench/tracing-ab.sh BINARY [BASELINE_BINARY]       # 3 rounds of 12 s each
#   ROUNDS=5 DURATION=15s RATIO=0.01 cluster/bench/tracing-ab.sh new/portcullis main/portcullis
# Build the binaries with `cluster/build-release.sh --product portcullis` and copy them aside.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BINARY [BASELINE_BINARY]" >&2; exit 2; }
bin=$(realpath "$1"); base=${2:+$(realpath "$2")}
. "$(dirname "$0")/subject-env.sh"
cd "$root"
config=subject-rs256
work=$(mktemp -d)

# The sink: on a free loopback port, counting exports and their bytes in $work/sink.count.
sink_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 - "$sink_port" "$work/sink.count" <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
port, out = int(sys.argv[1]), sys.argv[2]
exports = size = 0
class Sink(BaseHTTPRequestHandler):
    def log_message(self, *args): pass
    def do_POST(self):
        global exports, size
        size += len(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        exports += 1
        with open(out, "w") as f: f.write(f"{exports} exports, {size} bytes\n")
        self.send_response(200); self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0"); self.end_headers()
ThreadingHTTPServer(("127.0.0.1", port), Sink).serve_forever()
PY
sink_pid=$!
trap 'kill "$sink_pid" 2>/dev/null; rm -rf "$work"' EXIT

sides="off on"; [ -n "$base" ] && sides="base off on"
for round in $(seq 1 "${ROUNDS:-3}"); do
  for side in $sides; do
    case $side in
      base) subject_env "$base"; unset GATEWAY_TRACING ;;
      off) subject_env "$bin"; export GATEWAY_TRACING="{enabled: false}" ;;
      on) subject_env "$bin"; export GATEWAY_TRACING="{enabled: true, sampling_ratio: ${RATIO:-0.01}, endpoint: 'http://127.0.0.1:$sink_port/v1/traces', export_interval: 1s}" ;;
    esac
    CONFIGS=$config DURATION=${DURATION:-12s} WARMUP=2s REPEATS=1 RUN_SPEED=0 QUIET_MAX=${QUIET_MAX:-30} \
      "$peers/run-peers.sh" 2>&1 | grep -E "^$config +single" | sed "s/^/$side /" | tee -a "$work/lines"
  done
done
echo "sink: $(cat "$work/sink.count" 2>/dev/null || echo 'no export')"
# Columns after the side: config tokens run req/s … us/req (the harness's table).
python3 - "$work/lines" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = line.split()
    runs.setdefault(f[0], []).append((float(f[4]), float(f[15])))
med = {side: (statistics.median(r for r, _ in v), statistics.median(u for _, u in v), len(v)) for side, v in runs.items()}
for side, (rps, us, n) in med.items():
    print(f"median {side:4} {rps:8.0f} req/s {us:6.1f} us/req over {n} rounds")
def ratio(a, b):
    if a in med and b in med:
        print(f"{b} / {a}: req/s {med[b][0] / med[a][0]:.3f} ({(med[b][0] / med[a][0] - 1) * 100:+.1f} %), us/req {med[b][1] - med[a][1]:+.1f}")
ratio("base", "off")
ratio("off", "on")
PY
