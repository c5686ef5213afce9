#!/usr/bin/env bash
# WebSocket: the round trip of a 1 KiB binary message, echoed by a Python `websockets` server,
# directly and through the gateway (a `websocket: true` route without auth: the per-frame cost
# is the same with a token, which is checked once at the upgrade), alternated in rounds; prints
# the p50 and p99 of each and the gateway's added p50 (issue 18's goal: ≤ 30 µs). One client,
# one message in flight, loopback, so the numbers include Python's own per-message cost on both
# sides equally.
#   cluster/bench/websocket.sh                       # release build, 3 rounds of 20 000 messages
#   BINARY=.build/debug/portcullis ROUNDS=1 MESSAGES=2000 cluster/bench/websocket.sh   # a smoke run
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
if [ -z "${BINARY:-}" ]; then
  cluster/build-release.sh --product portcullis >/dev/null
  BINARY=$root/.build/release/portcullis
fi
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

python3 Tests/PortcullisClusterTests/Scripts/websocket_peers.py server --port-file "$work/port" --log /dev/null &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
echo_port=$(cat "$work/port")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
gw_port=$(free_port); admin_port=$(free_port)
cat > "$work/gateway.yaml" <<YAML
node_id: bench-ws
listen: 127.0.0.1:$gw_port
admin_listen: 127.0.0.1:$admin_port
event_loops: 1
access_log: false
routes:
  - name: ws
    path_prefix: /ws
    upstream: {targets: [127.0.0.1:$echo_port]}
    websocket: true
YAML
"$BINARY" gateway --config "$work/gateway.yaml" --log-level warning &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null && break; sleep 0.05; done

python3 - "$echo_port" "$gw_port" "${ROUNDS:-3}" "${MESSAGES:-20000}" <<'PY'
import asyncio, statistics, sys, time
from websockets.asyncio.client import connect

echo_port, gw_port, rounds, messages = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
payload = bytes(range(256)) * 4

async def measure(url):
    async with connect(url, compression=None, max_size=None, ping_interval=None) as ws:
        for _ in range(min(1000, messages)):  # warm-up
            await ws.send(payload); await ws.recv()
        times = []
        for _ in range(messages):
            start = time.perf_counter_ns()
            await ws.send(payload)
            await ws.recv()
            times.append(time.perf_counter_ns() - start)
    times.sort()
    return times[len(times) // 2] / 1000, times[int(len(times) * 0.99)] / 1000

async def main():
    direct_p50, gateway_p50 = [], []
    print(f"{'round':>5} {'direct p50':>11} {'direct p99':>11} {'gateway p50':>12} {'gateway p99':>12} {'added p50':>10}  (µs)")
    for round in range(1, rounds + 1):
        d50, d99 = await measure(f"ws://127.0.0.1:{echo_port}/ws")
        g50, g99 = await measure(f"ws://127.0.0.1:{gw_port}/ws")
        direct_p50.append(d50); gateway_p50.append(g50)
        print(f"{round:>5} {d50:>11.1f} {d99:>11.1f} {g50:>12.1f} {g99:>12.1f} {g50 - d50:>10.1f}")
    print(f"median of rounds: direct p50 {statistics.median(direct_p50):.1f} µs, gateway p50 {statistics.median(gateway_p50):.1f} µs, "
          f"added {statistics.median(gateway_p50) - statistics.median(direct_p50):.1f} µs")

asyncio.run(main())
PY
