#!/usr/bin/env bash
# The main job: installs what is missing, builds (release), starts a local cluster on loopback —
# Redis, a control plane with its authorization server, 3 gateways, a demo upstream, a demo web
# application — and runs a narrated demo in which every step checks what it claims: machine clients
# with curl and wrk, then a person in headless Chromium (cluster/demo-app/story.py) signing in to
# the demo app, whose tokens an operator revokes in the operator console. Screenshots go to $CLUSTER_DIR/screens/.
# Exits non-zero if any check fails.
#
#   cluster/demo.sh            build, start, demo, stop
#   cluster/demo.sh --keep     leave the cluster running afterwards (stop: cluster/run.sh stop)
#   cluster/demo.sh --no-build use the binary in $PORTCULLIS_BIN (tests run the demo this way)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
keep=0 build=1
for arg in "$@"; do
    case $arg in
        --keep) keep=1 ;;
        --no-build) build=0 ;;
        *) echo "usage: cluster/demo.sh [--keep] [--no-build]" >&2; exit 2 ;;
    esac
done

if [ $build = 1 ]; then
    "$here/setup.sh" release
    export PORTCULLIS_BIN=$root/.build/release/portcullis
fi
export CLUSTER_DIR=${CLUSTER_DIR:-$here/.run}
export GATEWAYS=${GATEWAYS:-3}

bold=$(tput bold 2>/dev/null || true) plain=$(tput sgr0 2>/dev/null || true)
failures=0
step() { printf '\n%s== %s ==%s\n' "$bold" "$*" "$plain"; }
say() { printf '   %s\n' "$*"; }
ok() { printf '   ✔ %s\n' "$*"; }
fail() { printf '   ✘ %s\n' "$*"; failures=$((failures + 1)); }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# jwt_field TOKEN header|claims NAME: a field of a JWT, decoded without verification.
jwt_field() {
    python3 -c "import base64,json,sys; p=sys.argv[1].split('.')[0 if sys.argv[2]=='header' else 1]; p+='='*(-len(p)%4); print(json.loads(base64.urlsafe_b64decode(p))[sys.argv[3]])" "$1" "$2" "$3"
}

"$here/run.sh" stop >/dev/null 2>&1 || true
cleanup() {
    if [ $keep = 1 ]; then
        echo; say "cluster left running (cluster/run.sh stop to stop it; credentials in $CLUSTER_DIR/env)"
    else
        "$here/run.sh" stop
    fi
}
trap cleanup EXIT
"$here/run.sh" start
# shellcheck disable=SC1091
. "$CLUSTER_DIR/env"
export PORTCULLIS_ADMIN_URL PORTCULLIS_ADMIN_TOKEN
gateway() { echo "http://127.0.0.1:$((GATEWAY_PORT + $1 - 1))"; }
admin_port() { echo $((GATEWAY_ADMIN_PORT + $1 - 1)); }

get_token() {
    curl -fsS -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials -d "scope=$1" "$CONTROL_URL/oauth2/token" | json 'd["access_token"]'
}

# ---------------------------------------------------------------------------------------------
step "1. A client gets an access token from the built-in authorization server (client_credentials)"
token=$(get_token "orders:read")
jti=$(jwt_field "$token" claims jti)
exp=$(jwt_field "$token" claims exp)
if [ -n "$token" ] && [ -n "$jti" ]; then
    ok "got an RFC 9068 access token (jti $jti, expires $(date -d @"$exp" +%H:%M:%S))"
else
    fail "no token from the authorization server"
fi

# ---------------------------------------------------------------------------------------------
step "2. The token works on every gateway, and the upstream sees the verified identity"
for i in $(seq 1 "$GATEWAYS"); do
    body=$(curl -sS -w '\n%{http_code}' -H "Authorization: Bearer $token" "$(gateway "$i")/orders/42")
    code=$(tail -n1 <<<"$body"); body=$(sed '$d' <<<"$body")
    subject=$(json 'd.get("subject")' <<<"$body" 2>/dev/null || echo "?")
    if [ "$code" = 200 ] && [ "$subject" = "$CLIENT_ID" ]; then
        ok "gw-$i: 200, upstream saw X-Auth-Subject=$subject, scopes=$(json 'd.get("scopes")' <<<"$body")"
    else
        fail "gw-$i: HTTP $code, upstream saw subject '$subject'"
    fi
done
code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Auth-Subject: admin" "$(gateway 1)/orders/42")
[ "$code" = 401 ] && ok "without a token: 401 (and a spoofed X-Auth-Subject header gets nowhere)" || fail "without a token: HTTP $code"

# ---------------------------------------------------------------------------------------------
step "3. Revoke the token cluster-wide and wait until every gateway applied it"
if "$PORTCULLIS_BIN" admin revoke --jti="$jti" --exp "$exp" --reason "demo" --wait; then
    ok "the control plane confirmed that every live gateway applied the revocation (times above)"
else
    fail "revocation was not applied everywhere in time"
fi
for i in $(seq 1 "$GATEWAYS"); do
    headers=$(curl -s -o /dev/null -D - -H "Authorization: Bearer $token" "$(gateway "$i")/orders/42")
    code=$(head -n1 <<<"$headers" | cut -d' ' -f2)
    challenge=$(grep -i '^www-authenticate' <<<"$headers" | tr -d '\r' || true)
    if [ "$code" = 401 ] && grep -q 'invalid_token' <<<"$challenge" && grep -qi 'revoked' <<<"$challenge"; then
        ok "gw-$i rejects it: 401 ${challenge#*: }"
    else
        fail "gw-$i: HTTP $code ($challenge)"
    fi
done
propagation=$(curl -s "http://127.0.0.1:$(admin_port 1)/metrics" | grep -E '^portcullis_revocation_propagation_seconds_(sum|count) ' || true)
say "gw-1's propagation histogram: $(tr '\n' ' ' <<<"$propagation")"

# ---------------------------------------------------------------------------------------------
step "4. Rotate the signing key while traffic flows: no request may fail"
old_token=$(get_token "orders:read")
old_kid=$(jwt_field "$old_token" header kid)
load_pids=()
for i in $(seq 1 "$GATEWAYS"); do
    wrk -t1 -c4 -d8s --timeout 10s -H "Authorization: Bearer $old_token" "$(gateway "$i")/orders/rotation" >"$CLUSTER_DIR/rotation-$i.txt" 2>&1 &
    load_pids+=($!)
done
sleep 1
if "$PORTCULLIS_BIN" admin rotate >/dev/null; then say "rotation requested"; else fail "rotation refused"; fi
new_token=$(get_token "orders:read")
new_kid=$(jwt_field "$new_token" header kid)
new_ok=0
for i in $(seq 1 "$GATEWAYS"); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $new_token" "$(gateway "$i")/orders/new-key")" = 200 ] && new_ok=$((new_ok + 1))
done
wait "${load_pids[@]}"
total=0 errors=0
for i in $(seq 1 "$GATEWAYS"); do
    n=$(grep -Eo '^ *[0-9]+ requests in' "$CLUSTER_DIR/rotation-$i.txt" | grep -Eo '[0-9]+' | head -1)
    e=$(grep -Eo 'Non-2xx or 3xx responses: *[0-9]+' "$CLUSTER_DIR/rotation-$i.txt" | grep -Eo '[0-9]+$' || echo 0)
    s=$(grep -Eo 'Socket errors:.*' "$CLUSTER_DIR/rotation-$i.txt" || true)
    total=$((total + ${n:-0})); errors=$((errors + ${e:-0}))
    [ -n "$s" ] && errors=$((errors + 1)) && say "gw-$i: $s"
done
if [ "$new_kid" != "$old_kid" ] && [ "$new_ok" = "$GATEWAYS" ] && [ "$errors" = 0 ] && [ "$total" -gt 0 ]; then
    ok "key $old_kid → $new_kid: $total requests during the rotation, 0 failed; the new key's tokens pass on all $GATEWAYS gateways"
else
    fail "rotation: kid $old_kid → $new_kid, $errors failed of $total, new-key token accepted by $new_ok/$GATEWAYS gateways"
fi

# ---------------------------------------------------------------------------------------------
step "5. A cluster-wide rate limit (50 requests/s on /limited) with load spread over all gateways"
limit_token=$(get_token "orders:read")
sleep 1.5
load_pids=()
for i in $(seq 1 "$GATEWAYS"); do
    wrk -t1 -c4 -d5s --timeout 10s -H "Authorization: Bearer $limit_token" "$(gateway "$i")/limited/x" >"$CLUSTER_DIR/limit-$i.txt" 2>&1 &
    load_pids+=($!)
done
wait "${load_pids[@]}"
attempted=0 admitted=0
for i in $(seq 1 "$GATEWAYS"); do
    n=$(grep -Eo '^ *[0-9]+ requests in' "$CLUSTER_DIR/limit-$i.txt" | grep -Eo '[0-9]+' | head -1)
    e=$(grep -Eo 'Non-2xx or 3xx responses: *[0-9]+' "$CLUSTER_DIR/limit-$i.txt" | grep -Eo '[0-9]+$' || echo 0)
    attempted=$((attempted + ${n:-0})); admitted=$((admitted + ${n:-0} - ${e:-0}))
    say "gw-$i: $(( ${n:-0} - ${e:-0} )) admitted, ${e:-0} got 429"
done
# The sliding window is two fixed 1 s windows weighted (SlidingWindow): a run that starts late in
# a fixed window, after an idle one, gets that window's 50 at once, then 50 a second — so 5 s of
# load is allowed 250 to 300 (and each node's start-up grant of 1, not reserved in advance).
expected=$((50 * 5)) most=$((50 * 6 + 3))
say "attempted $attempted in 5 s; admitted $admitted cluster-wide; the limit allows $expected to $most"
if [ "$admitted" -ge $((expected * 85 / 100)) ] && [ "$admitted" -le "$most" ] && [ "$attempted" -gt $((expected * 2)) ]; then
    ok "admitted total within the cluster-wide limit ($expected to $most for 5 s), though $((attempted / expected))× the limit was offered"
else
    fail "admitted $admitted, expected $((expected * 85 / 100)) to $most"
fi
headers=$(curl -s -D - -o /dev/null -H "Authorization: Bearer $limit_token" "$(gateway 1)/limited/x")
say "response headers: $(grep -iE '^(retry-after|ratelimit-(limit|remaining|reset))' <<<"$headers" | tr -d '\r' | tr '\n' ' ')"

# ---------------------------------------------------------------------------------------------
# 6 and 7: a person in a browser (the story's first half), then an operator revokes that person.
# The demo user's consent from an earlier run in this cluster folder is forgotten, so the story
# shows the consent page every time.
redis-cli -p "$REDIS_PORT" DEL "portcullis:as:consent:$DEMO_USER" >/dev/null
export DEMO_PASSWORD
# Debian's python3 (where python3-selenium is installed), as the browser tests use it.
if ! HOME="$CLUSTER_DIR/browser-home" /usr/bin/python3 "$here/demo-app/story.py" --app "$DEMO_APP_URL" --issuer "$CONTROL_URL" \
    --user "$DEMO_USER" --password-env DEMO_PASSWORD --gateways "$GATEWAYS" --screens "$CLUSTER_DIR/screens" --first-step 6; then
    failures=$((failures + 1))
fi

# ---------------------------------------------------------------------------------------------
step "8. A few lines of /metrics"
curl -s "http://127.0.0.1:$(admin_port 1)/metrics" | grep -E '^portcullis_(auth_decisions_total|ratelimit_decisions_total|revocation_applied_sequence|ratelimit_live_nodes|redis_connected)' | head -12 | sed 's/^/   /'
curl -s "$PORTCULLIS_ADMIN_URL/metrics" | grep -E '^portcullis_(cluster_live_nodes|node_revocation_lag)' | head -6 | sed 's/^/   /' || true

echo
if [ $failures = 0 ]; then
    printf '%sDemo complete: every check held.%s\n' "$bold" "$plain"
else
    printf '%sDemo finished with %d failed check(s).%s\n' "$bold" "$failures" "$plain"
    exit 1
fi
