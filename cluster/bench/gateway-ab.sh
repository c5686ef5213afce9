#!/usr/bin/env bash
# A/B of two gateway builds in the peer harness (cluster/bench/peers): alternates them (default
# RS256, one token) so both see the same machine load, and prints each run's line. Used for the
# per-change figures in docs/benchmarks.md.
#   cluster/bench/gateway-ab.sh OLD_BINARY NEW_BINARY        # 3 rounds of 12 s each
#   ROUNDS=5 DURATION=15s CONFIG=subject-es256-rotate cluster/bench/gateway-ab.sh old new
#   PROTO=h2 H2_SHAPES="1x100 64x10" CONFIG=h2-subject-rs256 cluster/bench/gateway-ab.sh old new
# Build each side with `cluster/build-release.sh --product portcullis` and copy the binary aside.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY" >&2; exit 2; }
# Resolved before the cd below, so paths relative to the caller work.
old=$(realpath "$1"); new=$(realpath "$2")
. "$(dirname "$0")/subject-env.sh"
cd "$root"
for round in $(seq 1 "${ROUNDS:-3}"); do
  for side in old new; do
    bin=$old; [ "$side" = new ] && bin=$new
    subject_env "$bin"
    CONFIGS=${CONFIG:-subject-rs256} DURATION=${DURATION:-12s} WARMUP=2s REPEATS=1 RUN_SPEED=0 QUIET_MAX=30 \
      "$peers/run-peers.sh" 2>&1 | grep -E "^${CONFIG:-subject-rs256}(@[0-9x]+)? +(single|rotate)" | sed "s/^/$side /"
  done
done
