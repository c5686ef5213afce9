#!/usr/bin/env bash
# Memory peers pacing 1-byte pieces toward a side that has stopped reading make the gateway hold
# (a request body's chunks to an upstream that does not read, an upstream's chunks to clients that
# do not, a WebSocket's bytes to an upstream that does not): cluster/bench/paced-writes-memory.py,
# per build and mode, on plain loopback. Prints the gateway's peak growth in resident memory.
#   cluster/bench/paced-writes-memory.sh /path/to/portcullis [/path/to/other]
#   MODES="ws" CONNS=4 SECONDS_HELD=30 cluster/bench/paced-writes-memory.sh /path/to/portcullis
# The kernel's socket buffers take megabytes of small writes before any waits in the gateway:
# h1-body needs about 20 s of pacing at 2 connections before the gateway's share starts.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BINARY [BINARY ...]" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for mode in ${MODES:-h1-body h1-response ws}; do
  case $mode in h1-body) conns=${CONNS:-2}; secs=${SECONDS_HELD:-40};; h1-response) conns=${CONNS:-10}; secs=${SECONDS_HELD:-10};; *) conns=${CONNS:-4}; secs=${SECONDS_HELD:-30};; esac
  for bin in "$@"; do
    dir=$(mktemp -d); up=$(free_port); gw=$(free_port); admin=$(free_port)
    cat > "$dir/gateway.yaml" <<YAML
listen: 127.0.0.1:$gw
admin_listen: 127.0.0.1:$admin
event_loops: 1
access_log: false
routes:
  - {name: body, path_prefix: /body, upstream: {targets: [127.0.0.1:$up]}}
  - {name: many, path_prefix: /many, upstream: {targets: [127.0.0.1:$up]}}
  - {name: ws, path_prefix: /ws, websocket: true, upstream: {targets: [127.0.0.1:$up]}}
YAML
    "$bin" gateway --config "$dir/gateway.yaml" > "$dir/gateway.log" 2>&1 & gpid=$!
    for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$admin/metrics" >/dev/null 2>&1 && break; sleep 0.1; done
    printf '%-60s ' "$bin"
    timeout $((secs + 60)) python3 "$here/paced-writes-memory.py" "$mode" "$gw" "$up" "$gpid" "$conns" "$secs" || echo "failed"
    kill "$gpid" 2>/dev/null || true
    wait "$gpid" 2>/dev/null || true
    rm -rf "$dir"
  done
done
