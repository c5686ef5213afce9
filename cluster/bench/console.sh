#!/usr/bin/env bash
# The operator console's cluster page with 20 gateways and 1 M revocations in Redis (issue 20's
# goal: it renders in ≤ 200 ms). Everything runs on loopback: redis-server, one control plane and
# NODES gateway processes (`event_loops: 1`), all the release build (cluster/build-release.sh,
# unless PORTCULLIS_BIN names a release binary). The revocations are written through the admin
# API's batch call (10 000 jtis a call, packed 1 000 to a signed change, as a mass revocation is),
# the gateways then start and sync them; once every gateway reports the head, the script signs
# in to the console and times N GETs of /console/cluster on one keep-alive connection, then a
# few revocation searches that find nothing (the worst case: they read the whole log).
#   cluster/bench/console.sh                       # 20 nodes, 1 000 000 revocations, N=200
#   NODES=5 REVOCATIONS=100000 N=50 cluster/bench/console.sh
# Needs redis-server and python3 (cluster/setup.sh). Prints median and p99 in milliseconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
nodes=${NODES:-20}
revocations=${REVOCATIONS:-1000000}
n=${N:-200}
out=${OUT:-$(mktemp -d /tmp/portcullis-console-bench.XXXXXX)}
mkdir -p "$out"
if [ -z "${PORTCULLIS_BIN:-}" ]; then
  cluster/build-release.sh --product portcullis >"$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
  PORTCULLIS_BIN=$PWD/.build/release/portcullis
fi
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

redis_port=$(port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$out" >"$out/redis.log" 2>&1 &
pids+=($!)
secret=$(python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode())')
token=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
token_hash=$(printf %s "$token" | sha256sum | cut -c1-64)
control_port=$(port)
admin_port=$(port)
cat >"$out/control.yaml" <<EOF
node_id: control-1
listen: 127.0.0.1:$control_port
admin_listen: 127.0.0.1:$admin_port
cluster: {redis: "redis://127.0.0.1:$redis_port", secret: $secret}
admin_tokens: [{name: bench, sha256: $token_hash}]
authorization_server:
  issuer: http://127.0.0.1:$control_port
  audience: api://bench
  key_encryption_key_file: $out/kek.secret
  clients: [{client_id: bench-client, secret_sha256: $token_hash, scopes: [read]}]
EOF
sleep 0.3
"$PORTCULLIS_BIN" control --config "$out/control.yaml" >"$out/control.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$admin_port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

echo "writing $revocations revocations ($(date -u +%T))"
python3 cluster/bench/console-load.py write "http://127.0.0.1:$admin_port" "$token" "$revocations"

echo "starting $nodes gateways ($(date -u +%T))"
for i in $(seq 1 "$nodes"); do
  cat >"$out/gw-$i.yaml" <<EOF
node_id: gw-$i
listen: 127.0.0.1:$(port)
admin_listen: 127.0.0.1:$(port)
event_loops: 1
access_log: false
issuers: [{name: builtin, issuer: "http://127.0.0.1:$control_port", audiences: [api://bench], algorithms: [ES256]}]
cluster: {redis: "redis://127.0.0.1:$redis_port", secret: $secret}
routes: [{name: api, path_prefix: /, upstream: {targets: ["127.0.0.1:9"]}, auth: {type: jwt}}]
EOF
  "$PORTCULLIS_BIN" gateway --config "$out/gw-$i.yaml" >"$out/gw-$i.log" 2>&1 &
  pids+=($!)
done
echo "load average $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; binary $PORTCULLIS_BIN"
python3 cluster/bench/console-load.py time "http://127.0.0.1:$admin_port" "$token" "$nodes" "$n"
echo "outputs in $out"
