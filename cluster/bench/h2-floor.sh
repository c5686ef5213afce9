#!/usr/bin/env bash
# The gateway's HTTP/2 path next to the floor of any SwiftNIO HTTP/2 proxy on this machine:
# `portcullis-bench h2-floor` (TLS, swift-nio-http2, GET → HTTP/1.1 backend on kept-alive
# connections, nothing else) in its two shapes — `streams` (a child channel per stream, the
# gateway's structure) and `frames` (one handler per connection, no child channels) — and the
# gateway's public route, each as the peer harness's subject with PROTO=h2, alternated in rounds,
# with nginx's and HAProxy's plain HTTP/2 proxies measured in each of the same harness runs. The
# floor does no auth, so its checks fail (CHECKS-FAILED); only its cost is of interest.
#   cluster/bench/h2-floor.sh                                  # 3 rounds, 10 s per row, 1x100
#   ROUNDS=1 DURATION=5s H2_SHAPES="1x100 64x10" cluster/bench/h2-floor.sh
#   PORTCULLIS_BIN=/path/to/portcullis cluster/bench/h2-floor.sh   # skips building the gateway
set -euo pipefail
. "$(dirname "$0")/subject-env.sh"
cd "$root"
if [ -z "${PORTCULLIS_BIN:-}" ]; then
  cluster/build-release.sh --product portcullis >/dev/null
  PORTCULLIS_BIN=$root/.build/release/portcullis
fi
cluster/build-release.sh --product PortcullisBench >/dev/null
export PROTO=h2 H2_SHAPES=${H2_SHAPES:-1x100}
configs="h2-nginx h2-haproxy h2-subject-hdr-none"
rows='^h2-(nginx|haproxy|subject-hdr-none)@[0-9x]+ +none '
harness() {
  CONFIGS=$configs DURATION=${DURATION:-10s} WARMUP=2s REPEATS=1 RUN_SPEED=0 QUIET_MAX=30 \
    "$peers/run-peers.sh" 2>/dev/null | grep -E "$rows" | sed "s/^/$1 /"
}
for round in $(seq 1 "${ROUNDS:-3}"); do
  for side in streams frames gateway; do
    if [ "$side" = gateway ]; then
      subject_env "$PORTCULLIS_BIN"
      harness "gateway"
      unset SUBJECT_SETUP SUBJECT_CMD SUBJECT_READY SUBJECT_PUBLIC_PATH SUBJECT_PATH
    else
      SUBJECT_SETUP=true SUBJECT_READY= SUBJECT_PUBLIC_PATH=/public/ SUBJECT_PATH=/api/ \
        SUBJECT_CMD="exec $root/.build/release/PortcullisBench h2-floor --mode $side --listen @PORT@ --backend @BACKEND@ --cert @TLS_CERT@ --key @TLS_KEY@" \
        harness "$side"
    fi
  done
done
