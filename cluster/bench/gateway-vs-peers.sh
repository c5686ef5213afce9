#!/usr/bin/env bash
# Portcullis against HAProxy (jwt_verify) and nginx, same machine, same run, same pinning
# (see ../shared/bench/peers/README.md). Builds release first.
#   cluster/bench/gateway-vs-peers.sh            # full run (~10 min)
#   DURATION=5s REPEATS=1 cluster/bench/gateway-vs-peers.sh   # quick
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
peers=${PEERS_DIR:-$root/../shared/bench/peers}
[ -x "$peers/run-peers.sh" ] || { echo "peer scripts not found at $peers (set PEERS_DIR)" >&2; exit 1; }
swift build -c release --product portcullis >/dev/null
. "$root/cluster/bench/subject-env.sh"
subject_env "$root/.build/release/portcullis"
exec "$peers/run-peers.sh"
