#!/usr/bin/env bash
# The peer benchmark (harness.py): the backend, nginx and HAProxy as plain proxies, HAProxy with
# jwt_verify (RS256, ES256) and, with SUBJECT_CMD, a gateway under test, all in one run over
# loopback. Installs what it needs first (cluster/bench/setup.sh). Knobs: docs/benchmarks.md,
# "The peer harness".
#   cluster/bench/peers/run-peers.sh                                    # the peers alone
#   DURATION=3s REPEATS=1 CONFIGS="nginx haproxy-jwt-rs256" cluster/bench/peers/run-peers.sh
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/../setup.sh" >&2
exec python3 "$here/harness.py"
