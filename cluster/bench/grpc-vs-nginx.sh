#!/usr/bin/env bash
# gRPC unary through Portcullis (RS256 on every call, `upstream.protocol: h2c`) against nginx's
# `grpc_pass` without authentication and, when installed, HAProxy (h2c both sides, one thread)
# plain and with its `jwt_verify` RS256 rules, in one run, same pinning: h2load on core LOAD_CORE
# with the backend, the proxy under test on core PROXY_CORE. The backend is nginx answering every call with
# one fixed gRPC message and `grpc-status: 0` in trailers, so the rows measure the proxies.
# Builds the release gateway first unless PORTCULLIS_BIN is set. Works from a plain clone.
#   cluster/bench/grpc-vs-nginx.sh                      # DURATION=10s REPEATS=3
#   DURATION=5s REPEATS=1 cluster/bench/grpc-vs-nginx.sh
# Every row counts failed calls (h2load's, and the gateway's gRPC-shaped errors from its metrics, which h2load
# sees as HTTP 200); the run exits 1 if any call through the gateway failed.
# Knobs: DURATION, REPEATS, CONNS (64), STREAMS (10), LOAD_CORE (0), PROXY_CORE (1), BASE_PORT (19080),
# LOGS (a folder that keeps the servers' logs).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
DURATION=${DURATION:-10s} REPEATS=${REPEATS:-3} CONNS=${CONNS:-64} STREAMS=${STREAMS:-10}
LOAD_CORE=${LOAD_CORE:-0} PROXY_CORE=${PROXY_CORE:-1} BASE_PORT=${BASE_PORT:-19080}
backend_port=$BASE_PORT nginx_port=$((BASE_PORT + 1)) gateway_port=$((BASE_PORT + 2))
haproxy_port=$((BASE_PORT + 3)) haproxy_jwt_port=$((BASE_PORT + 4))
for tool in nginx h2load taskset python3; do
  command -v $tool >/dev/null || { echo "$tool is missing (cluster/bench/setup.sh installs the peers)" >&2; exit 1; }
done
if [ -z "${PORTCULLIS_BIN:-}" ]; then
  cluster/build-release.sh --product portcullis >&2
  PORTCULLIS_BIN=$root/.build/release/portcullis
fi
run=$(mktemp -d -t portcullis-grpc.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${LOGS:-}" ]; then mkdir -p "$LOGS" && cp "$run"/*.log "$LOGS"/; fi
  rm -rf "$run"
}
trap cleanup EXIT
mkdir -p "$run/tmp" "$run/www"

# Keys, JWKS and an RS256 token (the peer harness's fixtures).
python3 cluster/bench/peers/fixtures.py "$run" --count 1 >/dev/null
read -r iss aud < <(cd cluster/bench/peers && python3 -c 'import fixtures; print(fixtures.ISSUER, fixtures.AUDIENCE)')
token=$(cat "$run/tokens/rs256.token")
# One gRPC message (flag 0, 4-byte length, 16 bytes of payload) as the request and the reply.
python3 -c 'import sys,struct; m=b"0123456789abcdef"; sys.stdout.buffer.write(b"\0"+struct.pack(">I",len(m))+m)' > "$run/request.bin"
cp "$run/request.bin" "$run/www/Unary"

common="daemon off; master_process off; worker_processes 1; error_log stderr warn; worker_rlimit_nofile 16384;
events { worker_connections 4096; multi_accept on; }"
temps="client_body_temp_path $run/tmp/b; proxy_temp_path $run/tmp/p; fastcgi_temp_path $run/tmp/f; uwsgi_temp_path $run/tmp/u; scgi_temp_path $run/tmp/s;"
cat > "$run/backend.conf" <<CONF
$common
pid $run/backend.pid;
http {
  access_log off; $temps
  http2_max_requests 100000000; keepalive_requests 100000000; keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$backend_port http2;
    location /pkg.Echo/ {
      alias $run/www/;
      default_type application/grpc;
      add_trailer grpc-status 0 always;
      # The request body is read and dropped.
      client_body_buffer_size 64k;
      error_page 405 =200 \$uri;
    }
  }
}
CONF
cat > "$run/nginx-grpc.conf" <<CONF
$common
pid $run/nginx-grpc.pid;
http {
  access_log off; $temps
  http2_max_requests 100000000; keepalive_requests 100000000; keepalive_timeout 300s;
  upstream backend { server 127.0.0.1:$backend_port; keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port http2;
    location / { grpc_pass grpc://backend; }
  }
}
CONF
cat > "$run/portcullis.yaml" <<YAML
listen: 127.0.0.1:$gateway_port
admin_listen: 127.0.0.1:$((gateway_port + 1000))
event_loops: 1
access_log: false
issuers:
  - {name: bench, issuer: $iss, audiences: [$aud], algorithms: [RS256], jwks_file: $run/keys/jwks.json}
routes:
  - name: grpc
    path_prefix: /pkg.Echo
    upstream: {targets: [127.0.0.1:$backend_port], protocol: h2c}
    auth: {type: jwt}
YAML

haproxy_cfg() { # port [jwt]
  cat <<CONF
global
    nbthread 1
    maxconn 4000
defaults
    mode http
    maxconn 4000
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:$1 proto h2
CONF
  if [ -n "${2:-}" ]; then cat <<CONF
    http-request set-var(txn.bearer) http_auth_bearer
    http-request set-var(txn.now) date()
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_header_query('\$.alg') -m str RS256 }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_payload_query('\$.iss') -m str $iss }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_payload_query('\$.aud') -m str $aud }
    http-request set-var(txn.ttl) var(txn.bearer),jwt_payload_query('\$.exp','int'),sub(txn.now)
    http-request deny deny_status 401 unless { var(txn.ttl) -m int gt 0 }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(RS256,"$run/keys/rs256.pub.pem") -m int 1 }
CONF
  fi
  cat <<CONF
    default_backend be
backend be
    server backend 127.0.0.1:$backend_port proto h2
CONF
}
has_haproxy=
if command -v haproxy >/dev/null; then
  has_haproxy=1
  haproxy_cfg $haproxy_port > "$run/haproxy.cfg"
  haproxy_cfg $haproxy_jwt_port jwt > "$run/haproxy-jwt.cfg"
fi

declare -A pid_of
start() { # name core argv...
  local name=$1 core=$2; shift 2
  taskset -c "$core" "$@" > "$run/$name.log" 2>&1 &
  pids+=($!); pid_of[$name]=$!
}
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
start backend "$LOAD_CORE" nginx -p "$run" -e stderr -c "$run/backend.conf"
start nginx-grpc "$PROXY_CORE" nginx -p "$run" -e stderr -c "$run/nginx-grpc.conf"
start portcullis "$PROXY_CORE" "$PORTCULLIS_BIN" gateway --config "$run/portcullis.yaml" --log-level warning
wait_port $backend_port; wait_port $nginx_port; wait_port $gateway_port
if [ -n "$has_haproxy" ]; then
  start haproxy "$PROXY_CORE" haproxy -db -f "$run/haproxy.cfg"
  start haproxy-jwt "$PROXY_CORE" haproxy -db -f "$run/haproxy-jwt.cfg"
  wait_port $haproxy_port; wait_port $haproxy_jwt_port
fi

# CPU time (user + system, clock ticks) of a process so far: /proc/PID/stat fields 14 and 15.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The gateway's gRPC calls it did not answer with status 200 so far (its metrics): a failed call
# is an HTTP 200 with grpc-status in trailers, which h2load counts as a success. 499s are not
# counted: they are the calls still in flight when h2load stops at its deadline and closes.
gateway_refusals() {
  curl -s "http://127.0.0.1:$((gateway_port + 1000))/metrics" \
    | awk '/^portcullis_http_requests_total\{route="grpc"/ && !/code="(200|499)"/ {n += $NF} END {print n + 0}'
}
load() { # duration port proxy-name [header] -> "req/s succeeded cpu-µs-per-succeeded-call failed"
  local out before after refused_before=0 refused_after=0
  [ "$3" = portcullis ] && refused_before=$(gateway_refusals)
  before=$(ticks "${pid_of[$3]}")
  out=$(taskset -c "$LOAD_CORE" h2load -c "$CONNS" -m "$STREAMS" -D "$1" -d "$run/request.bin" \
        -H 'content-type: application/grpc' -H 'te: trailers' ${4:+-H "$4"} "http://127.0.0.1:$2/pkg.Echo/Unary" 2>&1)
  after=$(ticks "${pid_of[$3]}")
  [ "$3" = portcullis ] && refused_after=$(gateway_refusals)
  local rps ok failed
  rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
  ok=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' <<<"$out")
  # Failed: h2load's failed requests (non-2xx, reset streams) and the gateway's gRPC-shaped errors.
  failed=$(sed -n 's/^requests: .* \([0-9]*\) failed,.*/\1/p' <<<"$out")
  failed=$(( ${failed:-0} + refused_after - refused_before ))
  ok=$(( ${ok:-0} - (refused_after - refused_before) ))
  # The proxy's CPU per successful call, warm-up excluded (it runs as a load of its own).
  echo "${rps:-0} $ok $(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$ok" \
       'BEGIN {printf "%.1f", (n > 0 ? t / hz * 1e6 / n : 0)}') $failed"
}
# Every row must be real gRPC successes: one call each, checked for grpc-status 0 in trailers.
check() { # port [header]
  local out; out=$(nghttp -v -d "$run/request.bin" -H 'content-type: application/grpc' -H 'te: trailers' ${2:+-H "$2"} \
                   "http://127.0.0.1:$1/pkg.Echo/Unary" 2>&1 | tr -d '\0')
  grep -aq "grpc-status: 0" <<<"$out" || { echo "no grpc-status 0 through port $1:" >&2; echo "$out" | tail -20 >&2; exit 1; }
}
check $nginx_port
check $gateway_port "authorization: Bearer $token"
if [ -n "$has_haproxy" ]; then
  check $haproxy_port
  check $haproxy_jwt_port "authorization: Bearer $token"
fi
if nghttp -v -d "$run/request.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
     "http://127.0.0.1:$gateway_port/pkg.Echo/Unary" 2>&1 | grep -aq "grpc-status: 0"; then
  echo "the gateway passed a call without a token" >&2; exit 1
fi

echo "== gRPC unary, h2load -c$CONNS -m$STREAMS -D $DURATION; load and backend on core $LOAD_CORE, proxy on core $PROXY_CORE =="
printf '%-28s %-6s %12s %12s %9s %14s\n' config run req/s succeeded failed 'CPU µs/call'
declare -A all cpu
failures=0
row() { # label key duration port proxy-name [header]
  local label=$1 key=$2; shift 2
  load 2s "${@:2}" >/dev/null
  read -r rps ok us failed < <(load "$@")
  printf '%-28s %-6s %12s %12s %9s %14s\n' "$label" "$repeat" "$rps" "$ok" "$failed" "$us"
  # A row's rate counts every answer; the gateway's rows must be all successes (the peers'
  # failures are printed: nginx's grpc_pass answers a few calls per run with 5xx here).
  [ "$key" != portcullis ] || failures=$((failures + failed))
  all[$key]+="$rps "; cpu[$key]+="$us "
}
for repeat in $(seq "$REPEATS"); do
  row nginx-grpc_pass nginx "$DURATION" $nginx_port nginx-grpc
  row portcullis-rs256-h2c portcullis "$DURATION" $gateway_port portcullis "authorization: Bearer $token"
  if [ -n "$has_haproxy" ]; then
    row haproxy-h2 haproxy "$DURATION" $haproxy_port haproxy
    row haproxy-jwt-rs256-h2 haproxy_jwt "$DURATION" $haproxy_jwt_port haproxy-jwt "authorization: Bearer $token"
  fi
done
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
n=$(median "${all[nginx]}") p=$(median "${all[portcullis]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
echo "medians: nginx grpc_pass $n req/s, portcullis (RS256) $p req/s, ratio $(ratio "$p" "$n")x"
echo "medians of CPU µs per call: nginx grpc_pass $(median "${cpu[nginx]}"), portcullis $(median "${cpu[portcullis]}")$([ -n "$has_haproxy" ] && echo ", haproxy h2 $(median "${cpu[haproxy]}"), haproxy jwt_verify $(median "${cpu[haproxy_jwt]}")")"
if [ -n "$has_haproxy" ]; then
  h=$(median "${all[haproxy]}") hj=$(median "${all[haproxy_jwt]}")
  echo "medians: haproxy h2 $h req/s, haproxy jwt_verify (RS256) $hj req/s; portcullis vs haproxy jwt_verify $(ratio "$p" "$hj")x, vs plain haproxy $(ratio "$p" "$h")x"
fi
if [ "$failures" -gt 0 ]; then
  echo "FAILED CALLS: $failures calls through the gateway failed in the rows above; its rates are not gRPC successes" >&2
  exit 1
fi
