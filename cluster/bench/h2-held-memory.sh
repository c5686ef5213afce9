#!/usr/bin/env bash
# Memory a hostile HTTP/2 client makes the gateway hold through writes it never takes: an
# HTTP/2 upstream (Tests/.../Scripts/h2_upstream.py, path /tiny-data) sends 1-byte DATA frames as
# fast as its window allows, to clients whose windows are shut. Prints, per build and shape, the
# gateway's peak growth in resident memory (cluster/bench/h2-held-memory.py).
#   cluster/bench/h2-held-memory.sh /path/to/portcullis [/path/to/other]   # shapes "1x100 10x100"
#   SHAPES="20x100" SECONDS_HELD=15 cluster/bench/h2-held-memory.sh /path/to/portcullis
#   OVERLOAD="{memory_limit: 64MiB}" cluster/bench/h2-held-memory.sh /path/to/portcullis   # with an overload: section
#   HELD_PATH=/big-data ...   # 16 KiB DATA frames (4 MiB a response) instead of 1-byte ones
# Needs python3 with h2, hpack and hyperframe (cluster/bench/setup.sh installs them).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BINARY [BINARY ...]" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
scripts=$here/../../Tests/PortcullisGatewayTests/Scripts
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for shape in ${SHAPES:-1x100 10x100}; do
  for bin in "$@"; do
    dir=$(mktemp -d); up=$(free_port); gw=$(free_port); admin=$(free_port)
    python3 "$scripts/h2_upstream.py" "$up" > "$dir/upstream.log" 2>&1 & upid=$!
    cat > "$dir/gateway.yaml" <<YAML
listen: 127.0.0.1:$gw
admin_listen: 127.0.0.1:$admin
event_loops: 1
${OVERLOAD:+overload: $OVERLOAD}
routes:
  - name: h2
    path_prefix: /
    upstream: {targets: [127.0.0.1:$up], protocol: h2c}
YAML
    "$bin" gateway --config "$dir/gateway.yaml" > "$dir/gateway.log" 2>&1 & gpid=$!
    for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$admin/metrics" >/dev/null 2>&1 && break; sleep 0.1; done
    printf '%-60s %-7s ' "$bin" "$shape"
    python3 "$here/h2-held-memory.py" "$gw" "$gpid" "${HELD_PATH:-/tiny-data}" "${shape%x*}" "${shape#*x}" "${SECONDS_HELD:-10}" || echo "failed"
    kill "$gpid" "$upid" 2>/dev/null || true
    wait "$gpid" "$upid" 2>/dev/null || true
    rm -rf "$dir"
  done
done
