#!/usr/bin/env bash
# WebSocket: the round trip of a 1 KiB binary message, one message in flight on one connection,
# echoed by `portcullis-bench websocket-echo` (a NIO echo server), measured by
# `portcullis-bench websocket-rtt` (a NIO client: each message is sent from the read of the last
# echo). Paths, alternated in rounds: direct to the echo server; through the gateway (a
# `websocket: true` route without auth: the per-frame cost is the same with a token, which is
# checked once at the upgrade); through `portcullis-bench relay-floor` (bytes copied on one NIO
# event loop, no parsing: what any SwiftNIO proxy pays); and, when installed, through nginx (`proxy_pass` with the Upgrade
# fields) and HAProxy (HTTP mode, which tunnels upgraded connections), each with one worker or
# thread like the gateway's one event loop. Prints each round's p50/p99 and, per proxy, the p50
# it adds over the direct path in the same round (issue 18's goal for the gateway: ≤ 30 µs).
#   cluster/bench/websocket.sh                    # release builds, 5 rounds of 20 000 messages
#   BINARY=/path/to/portcullis ROUNDS=1 MESSAGES=2000 cluster/bench/websocket.sh   # a smoke run
#   BENCH=/path/to/PortcullisBench ...           # a release build of the bench tool made elsewhere
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
if [ -z "${BINARY:-}" ]; then
  cluster/build-release.sh --product portcullis >/dev/null
  BINARY=$root/.build/release/portcullis
fi
bench=${BENCH:-}
if [ -z "$bench" ]; then
  cluster/build-release.sh --product PortcullisBench >/dev/null
  bench=$root/.build/release/PortcullisBench
fi
rounds=${ROUNDS:-5}; messages=${MESSAGES:-20000}
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "nothing listens on $1" >&2; exit 1; }

echo_port=$(free_port)
"$bench" websocket-echo --listen "$echo_port" >/dev/null &
pids+=($!)
wait_port "$echo_port"

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
paths=("direct $echo_port" "gateway $gw_port")

# The floor of any SwiftNIO proxy: `portcullis-bench relay-floor` copies bytes between the client
# and its own upstream connection on one event loop, unparsed (the handshake passes through it).
floor_port=$(free_port)
"$bench" relay-floor --listen "$floor_port" --backend "127.0.0.1:$echo_port" &
pids+=($!)
wait_port "$floor_port"
paths+=("floor $floor_port")

if command -v nginx >/dev/null; then
  nginx_port=$(free_port)
  mkdir -p "$work/nginx"
  cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log stderr warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server {
    listen 127.0.0.1:$nginx_port;
    location /ws {
      proxy_pass http://127.0.0.1:$echo_port;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 1h;
    }
  }
}
CONF
  nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
  pids+=($!)
  wait_port "$nginx_port"
  paths+=("nginx $nginx_port")
fi
if command -v haproxy >/dev/null; then
  haproxy_port=$(free_port)
  cat > "$work/haproxy.cfg" <<CONF
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout tunnel 1h
frontend ws
  bind 127.0.0.1:$haproxy_port
  default_backend echo
backend echo
  server echo 127.0.0.1:$echo_port
CONF
  haproxy -f "$work/haproxy.cfg" -db &
  pids+=($!)
  wait_port "$haproxy_port"
  paths+=("haproxy $haproxy_port")
fi

results=$work/results
: > "$results"
printf '%5s %-8s %9s %9s %10s\n' round path p50_µs p99_µs added_p50
for round in $(seq 1 "$rounds"); do
  direct=
  for entry in "${paths[@]}"; do
    set -- $entry
    line=$("$bench" websocket-rtt --port "$2" --messages "$messages")
    p50=$(sed -E 's/.*p50_us=([0-9.]+).*/\1/' <<<"$line"); p99=$(sed -E 's/.*p99_us=([0-9.]+).*/\1/' <<<"$line")
    [ "$1" = direct ] && direct=$p50
    added=$(python3 -c "print(f'{$p50 - $direct:.1f}')")
    printf '%5s %-8s %9s %9s %10s\n' "$round" "$1" "$p50" "$p99" "$( [ "$1" = direct ] && echo - || echo "$added")"
    echo "$1 $p50 $p99 $added" >> "$results"
  done
done
python3 - "$results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    path, p50, p99, added = line.split()
    rows.setdefault(path, []).append((float(p50), float(p99), float(added)))
print("medians of the rounds:")
for path, values in rows.items():
    p50 = statistics.median(v[0] for v in values); p99 = statistics.median(v[1] for v in values)
    added = statistics.median(v[2] for v in values)
    print(f"  {path:8} p50 {p50:7.1f} µs  p99 {p99:7.1f} µs" + ("" if path == "direct" else f"  added p50 {added:6.1f} µs"))
PY
