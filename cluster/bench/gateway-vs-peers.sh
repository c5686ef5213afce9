#!/usr/bin/env bash
# Portcullis against HAProxy (jwt_verify) and nginx, same machine, same run, same pinning
# (see ../shared/bench/peers/README.md). Builds release first.
#   cluster/bench/gateway-vs-peers.sh            # full run (~10 min)
#   DURATION=5s REPEATS=1 cluster/bench/gateway-vs-peers.sh   # quick
set -euo pipefail
. "$(dirname "$0")/subject-env.sh"
cd "$root"
cluster/build-release.sh --product portcullis >/dev/null
subject_env "$root/.build/release/portcullis"
exec "$peers/run-peers.sh"
