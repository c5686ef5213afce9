#!/usr/bin/env bash
# The gateway next to the floor of any SwiftNIO proxy on this machine: `portcullis-bench
# relay-floor` (one upstream connection per client connection, bytes copied unparsed) as the
# peer harness's subject, alternated with the gateway, with nginx and HAProxy (RS256) measured in
# each of the same harness runs. The relay does no auth, so the harness marks its rows
# CHECKS-FAILED; only its cost is of interest.
#   cluster/bench/nio-floor.sh                 # 3 rounds, 10 s per configuration
#   ROUNDS=1 DURATION=5s cluster/bench/nio-floor.sh
set -euo pipefail
. "$(dirname "$0")/subject-env.sh"
cd "$root"
cluster/build-release.sh --product portcullis >/dev/null
cluster/build-release.sh --product PortcullisBench >/dev/null
configs="nginx haproxy-jwt-rs256 subject-hdr-none subject-rs256"
rows='^(nginx|haproxy-jwt-rs256|subject-hdr-none|subject-rs256) +(single|none) '
for round in $(seq 1 "${ROUNDS:-3}"); do
  for side in floor gateway; do
    if [ "$side" = floor ]; then
      SUBJECT_SETUP=true SUBJECT_READY= SUBJECT_PUBLIC_PATH=/public/ SUBJECT_PATH=/api/ \
        SUBJECT_CMD="exec $root/.build/release/PortcullisBench relay-floor --listen @PORT@ --backend @BACKEND@" \
        CONFIGS=$configs DURATION=${DURATION:-10s} WARMUP=2s REPEATS=1 RUN_SPEED=0 QUIET_MAX=30 \
        "$peers/run-peers.sh" 2>/dev/null | grep -E "$rows" | sed "s/^/floor   /"
    else
      subject_env "$root/.build/release/portcullis"
      CONFIGS=$configs DURATION=${DURATION:-10s} WARMUP=2s REPEATS=1 RUN_SPEED=0 QUIET_MAX=30 \
        "$peers/run-peers.sh" 2>/dev/null | grep -E "$rows" | sed "s/^/gateway /"
      unset SUBJECT_SETUP SUBJECT_CMD SUBJECT_READY SUBJECT_PUBLIC_PATH SUBJECT_PATH
    fi
  done
done
