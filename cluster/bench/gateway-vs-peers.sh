#!/usr/bin/env bash
# Portcullis against HAProxy (jwt_verify) and nginx: the peer harness (cluster/bench/peers) with
# the gateway as its subject, same machine, same run, same pinning. Builds the release gateway
# first (cluster/build-release.sh), unless PORTCULLIS_BIN names a gateway binary to measure.
# Prints the harness's table and the gateway's ratios to its peers.
#   cluster/bench/gateway-vs-peers.sh                                   # full run (~10 min)
#   DURATION=5s REPEATS=1 cluster/bench/gateway-vs-peers.sh              # quick
#   PORTCULLIS_BIN=/path/to/portcullis cluster/bench/gateway-vs-peers.sh
set -euo pipefail
. "$(dirname "$0")/subject-env.sh"
cd "$root"
if [ -z "${PORTCULLIS_BIN:-}" ]; then
  echo "building the release gateway (cluster/build-release.sh --product portcullis)" >&2
  cluster/build-release.sh --product portcullis >&2
  PORTCULLIS_BIN=$root/.build/release/portcullis
fi
bin=$(realpath "$PORTCULLIS_BIN")
echo "gateway under test: $bin" >&2
case $bin in */debug/*) echo "warning: that is a debug build (PORTCULLIS_BIN)" >&2 ;; esac
subject_env "$bin"
exec "$peers/run-peers.sh"
