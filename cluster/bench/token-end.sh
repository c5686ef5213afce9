#!/usr/bin/env bash
# How soon each gateway closes a revoked token's long-lived connections (issue 18: within the
# revocation's propagation time + 10 ms). Runs the test "100 WebSockets and 100 gRPC streams
# across 3 gateways under 10 subjects…" (LongLivedRevocationTests: a real Redis, three gateway
# processes, Python websockets and grpcio peers, one subject revoked the way the control plane
# revokes) ROUNDS times against release gateways, and summarises what it prints: per node and
# protocol, the smallest bucket of `portcullis_token_end_close_seconds` holding every close (time
# from the node applying the revocation to the close being written), the mean of those closes,
# the node's revocation propagation (durable write → applied), and the slowest close as the
# Python clients saw it (their own clocks; 200 connections in Python).
#   cluster/bench/token-end.sh                                   # release build, 5 rounds
#   ROUNDS=2 PORTCULLIS_BIN=/path/to/portcullis cluster/bench/token-end.sh
# Needs what the test suite needs (cluster/setup.sh): redis-server, Python websockets and grpcio.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
ROUNDS=${ROUNDS:-5}
if [ -z "${PORTCULLIS_BIN:-}" ]; then
  cluster/build-release.sh --product portcullis >&2
  PORTCULLIS_BIN=$root/.build/release/portcullis
fi
# The test process only drives the run; the gateways it starts are PORTCULLIS_BIN.
swift build --build-tests >&2
out=$(mktemp -t portcullis-token-end.XXXXXX)
trap 'rm -f "$out"' EXIT
for round in $(seq "$ROUNDS"); do
  echo "round $round of $ROUNDS" >&2
  if ! PORTCULLIS_BIN=$PORTCULLIS_BIN swift test --skip-build --no-parallel --filter LongLivedRevocationTests > "$out.log" 2>&1; then
    grep -E "Expectation failed|error" "$out.log" | head -20 >&2 || true
    echo "round $round failed (its log: $out.log)" >&2
    exit 1
  fi
  grep "^token-end " "$out.log" | sed "s/^/$round /" >> "$out"
  rm -f "$out.log"
done
python3 - "$out" <<'PY'
import re, statistics, sys
nodes, clients = {}, []
for line in open(sys.argv[1]):
    round_, rest = line.split(" ", 1)
    m = re.match(r"token-end (\S+) (\S+): closed (\d+), all within (\S+) s, mean ([\d.]+) ms .*propagation mean ([\d.]+) ms", rest)
    if m:
        node, proto, count, within, mean, propagation = m.groups()
        nodes.setdefault(proto, []).append((float(within) if within != "+Inf" else float("inf"), float(mean), float(propagation), int(count)))
        continue
    m = re.match(r"token-end client: slowest close seen after the revocation call: (\d+) ms", rest)
    if m:
        clients.append(int(m.group(1)))
print("| protocol | node-rounds | closes | node-rounds whose every close fell within … | median of node means, ms | median propagation, ms |")
print("|---|---:|---:|---|---:|---:|")
for proto, rows in sorted(nodes.items()):
    buckets = sorted({r[0] for r in rows})
    spread = ", ".join(f"{sum(1 for r in rows if r[0] == b)} × {b * 1000:g} ms" for b in buckets)
    print(f"| {proto} | {len(rows)} | {sum(r[3] for r in rows)} | {spread} | {statistics.median(r[1] for r in rows):.2f} | {statistics.median(r[2] for r in rows):.2f} |")
if clients:
    print(f"\nslowest close seen by a client after the revocation call, per round: {clients} ms (median {statistics.median(clients)})")
PY
