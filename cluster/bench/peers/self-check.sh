#!/usr/bin/env bash
# The peer harness's unit tests, then its accept/reject checks alone, in a few seconds (no load):
# both HAProxy JWT peers must refuse every forged token their config covers, a plain HAProxy must
# fail those checks (so the checks can fail), and a gateway binary, when given, must pass a
# correct validator's checks.
# cluster/test.sh runs it with the debug gateway.
#   cluster/bench/peers/self-check.sh [GATEWAY_BINARY]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ $# -ge 1 ]; then
    bin=$(realpath "$1")
    . "$here/../subject-env.sh"
    subject_env "$bin"
fi
"$here/../setup.sh" >&2
python3 -m unittest discover -s "$here" -p 'test_*.py'
export CHECKS_ONLY=1 OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/portcullis-peers-check.XXXXXX")}
exec "$here/run-peers.sh"
