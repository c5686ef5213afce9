#!/usr/bin/env bash
# How soon each gateway closes a revoked token's long-lived connections (issue 18: within the
# revocation's propagation time + 10 ms). Runs the test "100 WebSockets and 100 gRPC streams
# across 3 gateways under 10 subjects…" (LongLivedRevocationTests: a real Redis, three gateway
# processes, Python websockets and grpcio peers, one subject revoked the way the control plane
# revokes) ROUNDS times against release gateways, and summarises what it prints: per node and
# protocol, the smallest bucket of `portcullis_token_end_close_seconds` holding every close (time
# from the node applying the revocation to the close being written), the mean of those closes,
# the node's revocation propagation (durable write → applied), the slowest close as the
# Python clients saw it (their own clocks; 200 connections in Python), and — the goal's own
# measure — when each node's close frames and stream ends reached the wire (a loopback capture,
# the kernel's clock: Scripts/wire_clock.py) after the revocation's acknowledgement, against that
# node's propagation + 10 ms. Run as root (the capture needs CAP_NET_RAW).
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
nodes, clients, wire = {}, [], {}
for line in open(sys.argv[1]):
    round_, rest = line.split(" ", 1)
    m = re.match(r"token-end wire (\S+) (\S+): ended (\d+), slowest (-?[\d.]+) ms after the acknowledgement; propagation ([\d.]+) ms; revocation call ([\d.]+) ms", rest)
    if m:
        node, proto, count, slowest, propagation, call = m.groups()
        wire.setdefault(proto, []).append((int(round_), int(count), float(slowest), float(propagation), float(call)))
        continue
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
if wire:
    print("\nOn the wire (the kernel's clock on loopback), from the revocation's acknowledgement:\n")
    print("| protocol | node-rounds | ends | node-rounds within their propagation + 10 ms | slowest end after the acknowledgement, ms (median of node-rounds / max) | margin left, ms (min) |")
    print("|---|---:|---:|---:|---:|---:|")
    for proto, rows in sorted(wire.items()):
        within = sum(1 for r in rows if r[2] <= r[3] + 10)
        margins = [r[3] + 10 - r[2] for r in rows]
        print(f"| {proto} | {len(rows)} | {sum(r[1] for r in rows)} | {within} of {len(rows)} | {statistics.median(r[2] for r in rows):.2f} / {max(r[2] for r in rows):.2f} | {min(margins):.2f} |")
    calls = sorted({(r[0], r[4]) for rows in wire.values() for r in rows})
    print(f"\nthe revocation call (durable write to acknowledgement), per round: {[c for _, c in calls]} ms")
if clients:
    print(f"\nslowest close seen by a client after the revocation call, per round: {clients} ms (median {statistics.median(clients)})")
PY
