#!/usr/bin/env bash
# A local Portcullis cluster on loopback: one redis-server, one control plane, N gateways, a
# demo upstream and a demo web application (cluster/demo-app, a public OAuth client). Everything
# it starts is recorded by PID and stopped by PID.
#
#   cluster/run.sh start     start in the background; returns once every part is ready
#   cluster/run.sh stop      stop what `start` started
#   cluster/run.sh status    what is running and where
#   cluster/run.sh up        start, then stay in the foreground until Ctrl-C (which stops everything)
#
# Environment (all optional):
#   GATEWAYS=3               number of gateway nodes
#   PORTCULLIS_BIN=…         the binary (default: .build/release/portcullis)
#   CLUSTER_DIR=…            state: rendered configs, secrets, logs, PIDs (default: cluster/.run)
#   REDIS_PORT=6390 CONTROL_PORT=9000 CONTROL_ADMIN_PORT=9001 UPSTREAM_PORT=8000 DEMO_APP_PORT=8090
#   GATEWAY_PORT=8081 GATEWAY_ADMIN_PORT=9101   first node's ports; node i adds i-1
#
# After `start`, $CLUSTER_DIR/env holds the endpoints and the demo credentials (source it): among
# them the demo user's (DEMO_USER, DEMO_PASSWORD) for signing in to the demo app in a browser.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

GATEWAYS=${GATEWAYS:-3}
PORTCULLIS_BIN=${PORTCULLIS_BIN:-$root/.build/release/portcullis}
CLUSTER_DIR=${CLUSTER_DIR:-$here/.run}
REDIS_PORT=${REDIS_PORT:-6390}
CONTROL_PORT=${CONTROL_PORT:-9000}
CONTROL_ADMIN_PORT=${CONTROL_ADMIN_PORT:-9001}
UPSTREAM_PORT=${UPSTREAM_PORT:-8000}
DEMO_APP_PORT=${DEMO_APP_PORT:-8090}
GATEWAY_PORT=${GATEWAY_PORT:-8081}
GATEWAY_ADMIN_PORT=${GATEWAY_ADMIN_PORT:-9101}
pids=$CLUSTER_DIR/pids

log() { printf '[cluster] %s\n' "$*"; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

random_secret() { head -c 32 /dev/urandom | basenc --base64url | tr -d '=\n'; }
sha256_hex() { printf %s "$1" | sha256sum | cut -d' ' -f1; }

# Waits until GET http://127.0.0.1:$1$2 answers 200, for at most $3 seconds.
wait_http() {
    local port=$1 path=$2 timeout=$3 what=$4 deadline=$((SECONDS + $3))
    until curl -fsS -o /dev/null "http://127.0.0.1:$port$path" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || die "$what did not become ready on :$port$path within ${timeout}s (logs in $CLUSTER_DIR/logs)"
        sleep 0.1
    done
}

# Starts a command in its own session, records its PID under a name.
spawn() {
    local name=$1; shift
    setsid "$@" >"$CLUSTER_DIR/logs/$name.log" 2>&1 < /dev/null &
    echo "$name $!" >>"$pids"
}

render() {
    sed -e "s|@REDIS_PORT@|$REDIS_PORT|g" -e "s|@CONTROL_PORT@|$CONTROL_PORT|g" \
        -e "s|@CONTROL_ADMIN_PORT@|$CONTROL_ADMIN_PORT|g" -e "s|@UPSTREAM@|127.0.0.1:$UPSTREAM_PORT|g" \
        -e "s|@DEMO_APP_PORT@|$DEMO_APP_PORT|g" -e "s|@DEMO_PASSWORD_HASH@|$DEMO_PASSWORD_HASH|g" \
        -e "s|@ISSUER@|http://127.0.0.1:$CONTROL_PORT|g" -e "s|@STATE@|$CLUSTER_DIR|g" \
        -e "s|@ADMIN_TOKEN_SHA256@|$(sha256_hex "$ADMIN_TOKEN")|g" \
        -e "s|@CLIENT_SECRET_SHA256@|$(sha256_hex "$CLIENT_SECRET")|g" "$1" >"$2"
}

start() {
    [ -x "$PORTCULLIS_BIN" ] || die "no binary at $PORTCULLIS_BIN (build with: cluster/build-release.sh)"
    if [ -s "$pids" ]; then die "a cluster from $CLUSTER_DIR seems to be running (cluster/run.sh stop)"; fi
    mkdir -p "$CLUSTER_DIR/logs" "$CLUSTER_DIR/redis"
    : >"$pids"
    umask 077
    [ -s "$CLUSTER_DIR/cluster.secret" ] || random_secret >"$CLUSTER_DIR/cluster.secret"
    [ -s "$CLUSTER_DIR/credentials" ] || printf 'ADMIN_TOKEN=%s\nCLIENT_SECRET=%s\n' "$(random_secret)" "$(random_secret)" >"$CLUSTER_DIR/credentials"
    # shellcheck disable=SC1091
    . "$CLUSTER_DIR/credentials"
    if [ -z "${DEMO_PASSWORD_HASH:-}" ]; then
        # The demo user's password, hashed once per cluster folder (one scrypt run, under a second
        # in a release build).
        DEMO_PASSWORD=$(random_secret)
        DEMO_PASSWORD_HASH=$(printf '%s\n' "$DEMO_PASSWORD" | "$PORTCULLIS_BIN" hash-password) || die "portcullis hash-password failed"
        printf "DEMO_PASSWORD=%s\nDEMO_PASSWORD_HASH='%s'\n" "$DEMO_PASSWORD" "$DEMO_PASSWORD_HASH" >>"$CLUSTER_DIR/credentials"
    fi
    umask 022
    render "$here/local/gateway.yaml" "$CLUSTER_DIR/gateway.yaml"
    render "$here/local/control.yaml" "$CLUSTER_DIR/control.yaml"
    render "$here/local/users.yaml" "$CLUSTER_DIR/users.yaml"

    log "redis-server on 127.0.0.1:$REDIS_PORT (append-only file in $CLUSTER_DIR/redis)"
    spawn redis redis-server "$here/redis.conf" --port "$REDIS_PORT" --dir "$CLUSTER_DIR/redis"
    local deadline=$((SECONDS + 10))
    until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "redis-server did not start (see $CLUSTER_DIR/logs/redis.log)"
        sleep 0.1
    done

    log "demo upstream on 127.0.0.1:$UPSTREAM_PORT"
    spawn upstream python3 "$here/demo-upstream.py" "127.0.0.1:$UPSTREAM_PORT"

    log "control plane: authorization server + JWKS on :$CONTROL_PORT, admin API + metrics on :$CONTROL_ADMIN_PORT"
    spawn control "$PORTCULLIS_BIN" control --config "$CLUSTER_DIR/control.yaml"
    wait_http "$CONTROL_ADMIN_PORT" /healthz 30 "control plane"
    wait_http "$CONTROL_PORT" /oauth2/jwks 30 "authorization server"

    local gateways=""
    for i in $(seq 1 "$GATEWAYS"); do
        local port=$((GATEWAY_PORT + i - 1)) admin=$((GATEWAY_ADMIN_PORT + i - 1))
        spawn "gateway-$i" "$PORTCULLIS_BIN" gateway --config "$CLUSTER_DIR/gateway.yaml" \
            --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" --node-id "gw-$i"
        gateways="$gateways 127.0.0.1:$port"
    done
    for i in $(seq 1 "$GATEWAYS"); do
        wait_http $((GATEWAY_ADMIN_PORT + i - 1)) /readyz 30 "gateway gw-$i"
    done
    wait_http "$UPSTREAM_PORT" /ready 10 "demo upstream"

    log "demo web application (public client demo-app) on 127.0.0.1:$DEMO_APP_PORT"
    local gateway_urls=""
    for i in $(seq 1 "$GATEWAYS"); do gateway_urls="$gateway_urls,http://127.0.0.1:$((GATEWAY_PORT + i - 1))"; done
    spawn demo-app python3 "$here/demo-app/app.py" --listen "127.0.0.1:$DEMO_APP_PORT" \
        --issuer "http://127.0.0.1:$CONTROL_PORT" --client-id demo-app --gateways "${gateway_urls#,}"
    wait_http "$DEMO_APP_PORT" /healthz 10 "demo web application"

    cat >"$CLUSTER_DIR/env" <<EOF
GATEWAYS=$GATEWAYS
GATEWAY_PORT=$GATEWAY_PORT
GATEWAY_ADMIN_PORT=$GATEWAY_ADMIN_PORT
CONTROL_URL=http://127.0.0.1:$CONTROL_PORT
PORTCULLIS_ADMIN_URL=http://127.0.0.1:$CONTROL_ADMIN_PORT
PORTCULLIS_ADMIN_TOKEN=$ADMIN_TOKEN
CLIENT_ID=demo-client
CLIENT_SECRET=$CLIENT_SECRET
REDIS_PORT=$REDIS_PORT
UPSTREAM_PORT=$UPSTREAM_PORT
DEMO_APP_URL=http://127.0.0.1:$DEMO_APP_PORT
DEMO_USER=demo
DEMO_PASSWORD=$DEMO_PASSWORD
PORTCULLIS_BIN=$PORTCULLIS_BIN
EOF
    chmod 600 "$CLUSTER_DIR/env"
    log "ready:"
    log "  gateways:            $gateways  (admin /metrics /readyz on :$GATEWAY_ADMIN_PORT and up)"
    log "  authorization server: http://127.0.0.1:$CONTROL_PORT/oauth2/token  (client demo-client; secret in $CLUSTER_DIR/env)"
    log "  demo web app:        http://127.0.0.1:$DEMO_APP_PORT/  (sign in as demo; password in $CLUSTER_DIR/env)"
    log "  admin API:           http://127.0.0.1:$CONTROL_ADMIN_PORT/v1/status  (token in $CLUSTER_DIR/env)"
    log "  Redis:               127.0.0.1:$REDIS_PORT"
    log "  logs:                $CLUSTER_DIR/logs/"
}

stop() {
    [ -f "$pids" ] || { log "nothing to stop"; return 0; }
    # Gateways and the control plane first (they drain), Redis last.
    tac "$pids" | while read -r name pid; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    local deadline=$((SECONDS + 15))
    while read -r name pid; do
        while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name ($pid) did not stop in time; killing"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done <"$pids"
    rm -f "$pids"
    log "stopped"
}

status() {
    [ -f "$pids" ] || { log "not running"; return 0; }
    while read -r name pid; do
        if kill -0 "$pid" 2>/dev/null; then state=running; else state=exited; fi
        printf '  %-12s pid %-8s %s\n' "$name" "$pid" "$state"
    done <"$pids"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    up)
        start
        trap 'stop; exit 0' INT TERM
        log "Ctrl-C stops the cluster"
        while sleep 3600; do :; done
        ;;
    *) echo "usage: cluster/run.sh start|stop|status|up" >&2; exit 2 ;;
esac
