#!/usr/bin/env bash
# The multi-host test bed: Linux network namespaces as hosts on one bridge, each with its own
# address, running a Portcullis cluster from the release archive the way docs/deployment.md
# installs it (the systemd units' command lines, /etc/portcullis laid out per host, secrets in
# files and environment files, the Redis ACL file from cluster/redis/make-acl.sh, TLS on every
# link that leaves a host).
#
#   cluster/hosts.sh up WORK [--binary BIN | --archive TAR]   build the archive (from BIN, default
#                                                            .build/debug/portcullis), make the hosts
#                                                            and start everything; prints WORK/bed.env
#   cluster/hosts.sh down WORK                               stop what `up` started, remove the hosts
#   cluster/hosts.sh exec WORK HOST CMD…                     run CMD on a host (ip netns exec)
#   cluster/hosts.sh start|stop WORK PROCESS                 one process (redis-1, gw-2, relay-redis-1, …)
#   cluster/hosts.sh link WORK HOST up|down                  plug or unplug a host's cable
#
# Environment: PCX_REDIS_TLS=1 (0: plaintext Redis, for the TLS cost measurement),
# PCX_DELAY_MS=1 and PCX_JITTER_MS=0.2 (one-way latency of every link into a host),
# PCX_MAX_STALENESS=5s (the gateways' fail-closed limit).
#
# The hosts (10.231.0.0/24 on bridge pcxbr0; the root namespace is 10.231.0.1, the operator's
# jump host, from which the tests reach the public ports):
#   redis-1 .11  primary (TLS, ACL users)          sent-1..3 .21-.23  Sentinels (TLS, password)
#   redis-2 .12  replica, redis-3 .13 replica       control   .30      control plane (HTTPS :9000,
#   gw-1..3 .41-.43  gateways (HTTPS :8443;                            admin HTTPS :9001)
#                    metrics on 127.0.0.1:9901 of their host)
#   client  .50  load generators
#
# Latency: this machine's kernel has no netem qdisc, so each host's listening ports are offered
# through cluster/hosts/delay-relay.py (the server binds 127.0.0.1 in its namespace, the relay the
# host's address), which delays every byte by PCX_DELAY_MS each way: one round trip to a host is
# 2 × PCX_DELAY_MS, as netem on each host's egress would give. Redis, the replica, the Sentinels
# and the control plane's listeners sit behind relays; the gateways' public ports do not (client
# requests are not what the bed measures, and the gateways see the clients' real addresses).
#
# Needs root and `ip netns`; exits 77 saying why when namespaces cannot be made.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cmd=${1:-}; shift || true
work=${1:-}; shift || true
[ -n "$cmd" ] && [ -n "$work" ] || { sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
mkdir -p "$work"; work=$(cd "$work" && pwd)

net=10.231.0
bridge=pcxbr0
declare -A address=([redis-1]=$net.11 [redis-2]=$net.12 [redis-3]=$net.13 [sent-1]=$net.21 [sent-2]=$net.22 [sent-3]=$net.23
    [control]=$net.30 [gw-1]=$net.41 [gw-2]=$net.42 [gw-3]=$net.43 [client]=$net.50)
hosts=(redis-1 redis-2 redis-3 sent-1 sent-2 sent-3 control gw-1 gw-2 gw-3 client)
gateways=(gw-1 gw-2 gw-3)
sentinels=(sent-1 sent-2 sent-3)
master=portcullis
tls=${PCX_REDIS_TLS:-1}
# Commands after `up` use the bed's own settings.
if [ "$cmd" != up ] && [ -f "$work/bed.env" ]; then tls=$(sed -n 's/^PCX_TLS=//p' "$work/bed.env"); fi
delay=${PCX_DELAY_MS:-1}
jitter=${PCX_JITTER_MS:-0.2}

log() { echo "hosts: $*" >&2; }
die() { echo "hosts: $*" >&2; exit 1; }
ns() { echo "pcx-$1"; }
on() { local h=$1; shift; ip netns exec "$(ns "$h")" "$@"; }

# --- processes ------------------------------------------------------------------------------------
# Each is started on its host with its output in WORK/log/NAME.log and its PID in WORK/pid/NAME;
# the command line is kept in WORK/cmd/NAME so `start` can run it again.
spawn() {
    local name=$1 host=$2; shift 2
    mkdir -p "$work/pid" "$work/log" "$work/cmd"
    printf '%q ' "$host" "$@" >"$work/cmd/$name"
    ip netns exec "$(ns "$host")" setsid "$@" >>"$work/log/$name.log" 2>&1 </dev/null &
    echo $! >"$work/pid/$name"
}
stop_one() {
    local name=$1 pid
    [ -f "$work/pid/$name" ] || return 0
    pid=$(cat "$work/pid/$name")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$work/pid/$name"
}
start_one() {
    local name=$1 line
    [ -f "$work/cmd/$name" ] || die "no command recorded for $name"
    line=$(cat "$work/cmd/$name")
    eval "spawn $name $line"
}
relay() {  # relay HOST PORT [LOCAL_PORT]: HOST_ADDR:PORT → 127.0.0.1:LOCAL_PORT with the delay
    local host=$1 port=$2 local_port=${3:-$2}
    # Real-time priority: the relay stands for a wire, which does not wait for a CPU.
    spawn "relay-$host-$port" "$host" chrt -f 10 python3 "$root/cluster/hosts/delay-relay.py" \
        "${address[$host]}:$port" "127.0.0.1:$local_port" --delay-ms "$delay" --jitter-ms "$jitter"
}
wait_port() {  # wait_port HOST ADDR PORT [SECONDS]
    local host=$1 addr=$2 port=$3 limit=${4:-30} i
    for i in $(seq 1 $((limit * 10))); do
        on "$host" bash -c "exec 3<>/dev/tcp/$addr/$port" 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on $addr:$port on $host after ${limit}s (see $work/log/)"
}

# --- network -----------------------------------------------------------------------------------------
network_up() {
    ip link add "$bridge" type bridge
    ip addr add "$net.1/24" dev "$bridge"
    ip link set "$bridge" up
    for h in "${hosts[@]}"; do
        ip netns add "$(ns "$h")"
        ip link add "pcxv-$h" type veth peer name eth0 netns "$(ns "$h")"
        ip link set "pcxv-$h" master "$bridge" up
        on "$h" ip addr add "${address[$h]}/24" dev eth0
        on "$h" ip link set eth0 up
        on "$h" ip link set lo up
    done
}
network_down() {
    for h in "${hosts[@]}"; do
        ip link del "pcxv-$h" 2>/dev/null || true
        ip netns del "$(ns "$h")" 2>/dev/null || true
    done
    ip link del "$bridge" 2>/dev/null || true
}
can_make_namespaces() {
    [ "$(id -u)" = 0 ] || { echo "not root"; return 1; }
    command -v ip >/dev/null || { echo "no ip command (iproute2)"; return 1; }
    ip netns add pcx-probe 2>/dev/null || { echo "ip netns add fails here"; return 1; }
    ip netns del pcx-probe
    if ip link show "$bridge" >/dev/null 2>&1; then echo "$bridge exists: another bed is up (cluster/hosts.sh down WORK)"; return 1; fi
}

# --- certificates and secrets ---------------------------------------------------------------------
secret() { openssl rand 32 | basenc --base64url | tr -d '=\n'; }
make_ca() {  # make_ca DIR NAME
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$2" \
        -keyout "$1/$2.key" -out "$1/$2.pem" 2>/dev/null
}
make_cert() {  # make_cert CA_DIR CA_NAME OUT_STEM CN SAN [clientAuth]
    local dir=$1 ca=$2 out=$3 cn=$4 san=$5 usage=${6:-serverAuth,clientAuth}
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$cn" \
        -keyout "$out.key" -out "$out.csr" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$san" "$usage" >"$out.ext"
    openssl x509 -req -in "$out.csr" -CA "$dir/$ca.pem" -CAkey "$dir/$ca.key" -CAcreateserial -days 2 \
        -extfile "$out.ext" -out "$out.pem" 2>/dev/null
    rm -f "$out.csr" "$out.ext"
}

materials() {
    local m=$work/materials
    mkdir -p "$m"
    make_ca "$m" pcx-ca            # the bed's CA for the control plane and gateways
    # Redis and the Sentinels have a CA of their own, which signs nothing else: with one CA for
    # all, a gateway host's own certificate passed the nodes' check of a Redis server, so a gateway
    # host could stand in for Redis (and collect the control plane's password) — docs/deployment.md.
    make_ca "$m" pcx-redis-ca
    make_ca "$m" pcx-wrong-ca      # a CA nobody uses: the "wrong CA" host trusts only this one
    make_ca "$m" pcx-admin-ca      # admin client certificates
    # Every Redis server's certificate also names redis.pcx (the nodes' redis_tls.server_name),
    # which no Sentinel's does: a Sentinel naming itself as the primary fails that check.
    for h in redis-1 redis-2 redis-3; do
        make_cert "$m" pcx-redis-ca "$m/$h" "$h" "DNS:$h,DNS:redis.pcx,IP:${address[$h]}"
    done
    for h in sent-1 sent-2 sent-3; do
        make_cert "$m" pcx-redis-ca "$m/$h" "$h" "DNS:$h,IP:${address[$h]}"
    done
    for h in control gw-1 gw-2 gw-3 client; do
        make_cert "$m" pcx-ca "$m/$h" "$h" "DNS:$h,IP:${address[$h]}"
    done
    make_cert "$m" pcx-admin-ca "$m/ops" "ops" "DNS:ops" clientAuth
    for s in cluster_secret kek admin_token client_secret gateway_pw control_pw replica_pw sentinel_pw sentinel_client_pw sentinel_node_pw operator_pw; do
        secret >"$m/$s"
    done
    PORTCULLIS_REDIS_GATEWAY_PASSWORD=$(cat "$m/gateway_pw") PORTCULLIS_REDIS_CONTROL_PASSWORD=$(cat "$m/control_pw") \
    PORTCULLIS_REDIS_REPLICA_PASSWORD=$(cat "$m/replica_pw") PORTCULLIS_REDIS_SENTINEL_PASSWORD=$(cat "$m/sentinel_pw") \
        "$root/cluster/redis/make-acl.sh" >"$m/users.acl"
    # The operator's own account (ACL LOG, INFO): a person's superuser, not a Portcullis role.
    echo "user pcx-operator on #$(tr -d '\n' <"$m/operator_pw" | sha256sum | cut -c1-64) ~* &* +@all" >>"$m/users.acl"
}

# --- the archive ------------------------------------------------------------------------------------
install_archive() {
    local binary=$1 archive=$2
    if [ -z "$archive" ]; then
        local extra=()
        if ldd "$binary" | grep libswiftCore >/dev/null; then extra=(--allow-toolchain-libs); fi
        "$root/cluster/package.sh" --binary "$binary" --out "$work/dist" "${extra[@]}" >"$work/package.log" 2>&1 \
            || { cat "$work/package.log" >&2; die "package.sh failed"; }
        archive=$(tail -n 1 "$work/package.log")
    fi
    mkdir -p "$work/opt"
    tar -C "$work/opt" -xzf "$archive"
    local dir
    dir=$(find "$work/opt" -mindepth 1 -maxdepth 1 -type d | head -n 1)
    echo "$dir" >"$work/archive-dir"
}
# The unit's ExecStart for a host: the archive's unit file with the install paths moved under the
# host's root (WORK/hosts/HOST) and %i filled in.
unit_command() {  # unit_command UNIT HOST NODE_ID
    local unit=$1 host=$2 node=$3 dir
    dir=$(cat "$work/archive-dir")
    grep '^ExecStart=' "$dir/systemd/$unit" | sed -e 's/^ExecStart=//' \
        -e "s|/usr/local/bin/portcullis|$dir/bin/portcullis|" -e "s|/etc/portcullis/|$work/hosts/$host/etc/portcullis/|g" \
        -e "s|%i|$node|g"
}
unit_environment() {  # the unit's EnvironmentFile, moved under the host's root
    local unit=$1 host=$2 dir
    dir=$(cat "$work/archive-dir")
    grep '^EnvironmentFile=' "$dir/systemd/$unit" | sed -e 's/^EnvironmentFile=-\{0,1\}//' -e "s|/etc/portcullis/|$work/hosts/$host/etc/portcullis/|"
}
# Runs a unit's command line on a host with its environment file (as systemd would).
spawn_unit() {  # spawn_unit NAME HOST UNIT NODE_ID
    local name=$1 host=$2 unit=$3 node=$4 envfile
    envfile=$(unit_environment "$unit" "$host")
    # shellcheck disable=SC2046
    spawn "$name" "$host" env $(grep -v '^#' "$envfile" | xargs) $(unit_command "$unit" "$host" "$node")
}

# --- Redis, replica, Sentinels ----------------------------------------------------------------------
redis_conf() {  # redis_conf HOST
    local h=$1 m=$work/materials d=$work/hosts/$1/redis
    mkdir -p "$d"
    cp "$m/users.acl" "$d/users.acl"
    {
        echo "bind 127.0.0.1"
        echo "dir $d"
        echo 'save ""'
        echo "appendonly no"
        echo "aclfile $d/users.acl"
        echo "masteruser portcullis-replica"
        echo "masterauth $(cat "$m/replica_pw")"
        echo "replica-announce-ip ${address[$h]}"
        echo "replica-announce-port 6379"
        echo "repl-diskless-sync-delay 0"
        if [ "$tls" = 1 ]; then
            echo "port 0"
            echo "tls-port 6379"
            echo "tls-cert-file $m/$h.pem"
            echo "tls-key-file $m/$h.key"
            echo "tls-ca-cert-file $m/pcx-redis-ca.pem"
            echo "tls-auth-clients no"
            echo "tls-replication yes"
        else
            echo "port 6379"
        fi
        if [ "$h" != redis-1 ]; then echo "replicaof ${address[redis-1]} 6379"; fi
    } >"$d/redis.conf"
}
sentinel_conf() {  # sentinel_conf HOST
    local h=$1 m=$work/materials d=$work/hosts/$1/sentinel
    mkdir -p "$d"
    {
        echo "bind 127.0.0.1"
        echo "dir $d"
        echo "sentinel announce-ip ${address[$h]}"
        echo "sentinel announce-port 26379"
        echo "requirepass $(cat "$m/sentinel_client_pw")"
        echo "sentinel sentinel-pass $(cat "$m/sentinel_client_pw")"
        # Portcullis nodes may only look the primary up: with the admin password a gateway host
        # could point the Sentinels at a Redis of its own (SENTINEL REMOVE / MONITOR).
        echo "user portcullis-node on #$(tr -d '\n' <"$m/sentinel_node_pw" | sha256sum | cut -c1-64) -@all +auth +hello +ping +sentinel|get-master-addr-by-name"
        if [ "$tls" = 1 ]; then
            echo "port 0"
            echo "tls-port 26379"
            echo "tls-cert-file $m/$h.pem"
            echo "tls-key-file $m/$h.key"
            echo "tls-ca-cert-file $m/pcx-redis-ca.pem"
            echo "tls-auth-clients no"
            echo "tls-replication yes"
        else
            echo "port 26379"
        fi
        echo "sentinel monitor $master ${address[redis-1]} 6379 2"
        echo "sentinel auth-user $master portcullis-sentinel"
        echo "sentinel auth-pass $master $(cat "$m/sentinel_pw")"
        echo "sentinel down-after-milliseconds $master 1000"
        echo "sentinel failover-timeout $master 5000"
        echo "sentinel parallel-syncs $master 1"
    } >"$d/sentinel.conf"
}
redis_cli() {  # redis_cli HOST PORT [args…]: as the control plane's user, from the jump host
    local h=$1 port=$2; shift 2
    local t=()
    [ "$tls" = 1 ] && t=(--tls --cacert "$work/materials/pcx-redis-ca.pem")
    redis-cli -h "${address[$h]}" -p "$port" "${t[@]}" "$@"
}

# --- Portcullis configs -----------------------------------------------------------------------------
redis_url() {  # redis_url USER PASSWORD_REFERENCE
    local scheme=redis-sentinel
    [ "$tls" = 1 ] && scheme=rediss-sentinel
    echo "$scheme://$1:$2@${address[sent-1]}:26379,${address[sent-2]}:26379,${address[sent-3]}:26379/$master"
}
redis_tls_section() {
    [ "$tls" = 1 ] || return 0
    printf '  redis_tls:\n    ca_file: /etc/portcullis/certs/redis-ca.pem\n    server_name: redis.pcx\n'
}
cluster_section() {  # cluster_section REDIS_USER REVOCATION_SETTING: the `cluster:` block of a config
    echo "cluster:"
    echo "  redis: $(redis_url "$1" '${REDIS_PASSWORD}')"
    redis_tls_section
    echo '  sentinel_auth: {username: portcullis-node, password: "${SENTINEL_PASSWORD}"}'
    echo "  secret: {file: /etc/portcullis/secrets/cluster.secret}"
    echo "  heartbeat_interval: 500ms"
    echo "  revocation:"
    echo "    $2"
}
host_etc() {  # host_etc HOST: /etc/portcullis of a host, with certs/ and secrets/
    local e=$work/hosts/$1/etc/portcullis
    mkdir -p "$e/certs" "$e/secrets"
    cp "$work/materials/pcx-redis-ca.pem" "$e/certs/redis-ca.pem"
    cp "$work/materials/cluster_secret" "$e/secrets/cluster.secret"
    echo "$e"
}
env_file() {  # env_file FILE REDIS_PASSWORD_FILE: the unit's EnvironmentFile (root-only secrets)
    printf 'REDIS_PASSWORD=%s\nSENTINEL_PASSWORD=%s\n' "$(cat "$2")" "$(cat "$work/materials/sentinel_node_pw")" >"$1"
}
# Paths inside configs are written as the deployment guide has them (/etc/portcullis/…) and moved
# under the host's root here.
place() { sed "s|/etc/portcullis/|$2/|g" >"$1"; }

control_config() {
    local m=$work/materials e
    e=$(host_etc control)
    cp "$m/control.pem" "$e/certs/control.pem"; cp "$m/control.key" "$e/secrets/control.key"
    cp "$m/pcx-admin-ca.pem" "$e/certs/admin-clients-ca.pem"
    cp "$m/kek" "$e/secrets/kek.secret"
    env_file "$e/secrets/control.env" "$m/control_pw"
    place "$e/control.yaml" "$e" <<EOF
node_id: control-1
listen: 127.0.0.1:9000
tls:
  certificate_chain: /etc/portcullis/certs/control.pem
  private_key: /etc/portcullis/secrets/control.key
admin_listen: 127.0.0.1:9001
admin_tls:
  certificate_chain: /etc/portcullis/certs/control.pem
  private_key: /etc/portcullis/secrets/control.key
  client_ca: /etc/portcullis/certs/admin-clients-ca.pem
  client_certificates: optional
admin_auth: token_or_certificate
admin_tokens:
  - {name: ops, sha256: $(tr -d '\n' <"$m/admin_token" | sha256sum | cut -c1-64)}
$(cluster_section portcullis-control "required_replicas: 1")
rate_limits:
  - {name: per-client, key: client_id, limit: 100000, window: 1s}
authorization_server:
  issuer: https://${address[control]}:9000
  audience: api://bed
  access_token_ttl: 10m
  algorithm: ES256
  key_encryption_key_file: /etc/portcullis/secrets/kek.secret
  clients:
    - client_id: orders-service
      secret_sha256: $(tr -d '\n' <"$m/client_secret" | sha256sum | cut -c1-64)
      scopes: [orders:read]
EOF
}
gateway_config() {  # gateway_config HOST
    local h=$1 m=$work/materials e
    e=$(host_etc "$h")
    cp "$m/$h.pem" "$e/certs/gateway.pem"; cp "$m/$h.key" "$e/secrets/gateway.key"
    env_file "$e/secrets/gateway.env" "$m/gateway_pw"
    place "$e/gateway.yaml" "$e" <<EOF
listen: ${address[$h]}:8443
admin_listen: 127.0.0.1:9901
tls:
  certificate_chain: /etc/portcullis/certs/gateway.pem
  private_key: /etc/portcullis/secrets/gateway.key
access_log: false
issuers:
  - name: builtin
    issuer: https://${address[control]}:9000
    audiences: [api://bed]
    algorithms: [ES256]
rate_limits:
  - {name: per-client, key: client_id, limit: 100000, window: 1s}
$(cluster_section portcullis-gateway "max_staleness: ${PCX_MAX_STALENESS:-5s}")
routes:
  - name: orders
    path_prefix: /orders
    upstream: {targets: [127.0.0.1:8080]}
    auth: {type: jwt, scopes: {any_of: [orders:read]}}
    rate_limit: per-client
EOF
}

# --- up / down -----------------------------------------------------------------------------------------
up() {
    local binary=$root/.build/debug/portcullis archive=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --binary) binary=$(realpath "$2"); shift 2 ;;
            --archive) archive=$(realpath "$2"); shift 2 ;;
            *) die "unknown argument $1" ;;
        esac
    done
    local why
    why=$(can_make_namespaces) || { echo "hosts: SKIP: cannot make network namespaces here: $why" >&2; exit 77; }
    [ -n "$archive" ] || [ -x "$binary" ] || die "no binary at $binary"
    for tool in redis-server redis-sentinel redis-cli openssl python3 chrt; do
        command -v "$tool" >/dev/null || die "needs $tool"
    done
    rm -rf "$work/pid" "$work/cmd" "$work/log" "$work/hosts" "$work/opt" "$work/materials"
    log "archive"; install_archive "$binary" "$archive"
    log "certificates, secrets, ACL file"; materials
    log "hosts"; network_up
    complete=0
    trap '[ "$complete" = 1 ] || { log "up failed; tearing down (logs in $work/log)"; down; }' EXIT

    for h in redis-1 redis-2 redis-3; do
        redis_conf "$h"
        spawn "$h" "$h" redis-server "$work/hosts/$h/redis/redis.conf"
        relay "$h" 6379
        wait_port "$h" 127.0.0.1 6379
    done
    for h in "${sentinels[@]}"; do
        sentinel_conf "$h"
        spawn "$h" "$h" redis-sentinel "$work/hosts/$h/sentinel/sentinel.conf"
        relay "$h" 26379
        wait_port "$h" 127.0.0.1 26379
    done
    log "waiting for the replicas and the Sentinels"
    local i
    for i in $(seq 1 100); do
        [ "$(redis_cli redis-1 6379 --no-auth-warning --user pcx-operator --pass "$(cat "$work/materials/operator_pw")" INFO replication 2>/dev/null \
            | grep -c 'state=online')" = 2 ] \
        && redis_cli sent-1 26379 --no-auth-warning -a "$(cat "$work/materials/sentinel_client_pw")" SENTINEL replicas "$master" 2>/dev/null \
            | grep -q "${address[redis-3]}" \
        && redis_cli sent-1 26379 --no-auth-warning -a "$(cat "$work/materials/sentinel_client_pw")" SENTINEL sentinels "$master" 2>/dev/null \
            | grep -c '^name$' | grep -q '^2$' && break
        sleep 0.2
    done
    [ "$i" -lt 100 ] || die "the replicas were not in sync or the Sentinels did not see them and each other within 20 s"

    control_config
    spawn_unit control control portcullis-control.service control-1
    relay control 9000; relay control 9001
    wait_port control 127.0.0.1 9001 60
    for h in "${gateways[@]}"; do
        gateway_config "$h"
        spawn "upstream-$h" "$h" python3 "$root/cluster/demo-upstream.py" 127.0.0.1:8080
        spawn_unit "$h" "$h" portcullis-gateway@.service "$h"
    done
    for h in "${gateways[@]}"; do wait_port "$h" "${address[$h]}" 8443 60; done
    # Ready: key sets loaded and the revocation state synced (what a load balancer waits for).
    for h in "${gateways[@]}"; do
        for i in $(seq 1 300); do
            [ "$(on "$h" curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9901/readyz)" = 200 ] && break
            sleep 0.1
        done
        [ "$i" -lt 300 ] || die "$h not ready after 30 s (see $work/log/$h.log)"
    done
    complete=1
    write_env
    log "up: $(ls "$work/pid" | wc -l) processes on ${#hosts[@]} hosts; environment in $work/bed.env"
}
write_env() {
    local m=$work/materials
    {
        echo "PCX_WORK=$work"
        echo "PCX_TLS=$tls"
        echo "PCX_DELAY_MS=$delay"
        echo "PCX_CA=$m/pcx-ca.pem"
        echo "PCX_REDIS_CA=$m/pcx-redis-ca.pem"
        echo "PCX_WRONG_CA=$m/pcx-wrong-ca.pem"
        echo "PCX_CONTROL=https://${address[control]}:9000"
        echo "PCX_ADMIN=https://${address[control]}:9001"
        echo "PCX_ADMIN_TOKEN=$(cat "$m/admin_token")"
        echo "PCX_CLIENT_ID=orders-service"
        echo "PCX_CLIENT_SECRET=$(cat "$m/client_secret")"
        echo "PCX_GATEWAYS='$(for h in "${gateways[@]}"; do printf 'https://%s:8443 ' "${address[$h]}"; done)'"
        echo "PCX_GATEWAY_PASSWORD=$(cat "$m/gateway_pw")"
        echo "PCX_CONTROL_PASSWORD=$(cat "$m/control_pw")"
        echo "PCX_OPERATOR_PASSWORD=$(cat "$m/operator_pw")"
        echo "PCX_SENTINEL_PASSWORD=$(cat "$m/sentinel_client_pw")"
        echo "PCX_SENTINEL_NODE_PASSWORD=$(cat "$m/sentinel_node_pw")"
        echo "PCX_BINARY=$(cat "$work/archive-dir")/bin/portcullis"
    } >"$work/bed.env"
}
down() {
    if [ -d "$work/pid" ]; then
        # Gateways and the control plane first (they drain), then the relays, Redis and the Sentinels.
        for name in gw-1 gw-2 gw-3 control; do stop_one "$name"; done
        for f in "$work/pid"/*; do [ -e "$f" ] && stop_one "$(basename "$f")"; done
    fi
    network_down
}

case "$cmd" in
    up) up "$@" ;;
    down) down ;;
    exec) h=$1; shift; on "$h" "$@" ;;
    start) start_one "$1" ;;
    stop) stop_one "$1" ;;
    link)
        h=$1; state=$2
        [ "$state" = up ] || [ "$state" = down ] || die "link HOST up|down"
        ip link set "pcxv-$h" "$state" ;;
    redis-cli) redis_cli "$@" ;;
    *) die "unknown command $cmd (up, down, exec, start, stop, link, redis-cli)" ;;
esac
