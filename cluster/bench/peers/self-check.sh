#!/usr/bin/env bash
# The peer harness's unit tests, then its accept/reject checks alone, in a few seconds (no load):
# both HAProxy JWT peers must refuse every forged token their config covers, a plain HAProxy must
# fail those checks (so the checks can fail), and a gateway binary, when given, must pass a
# correct validator's checks. Then the same over HTTP/2 (PROTO=h2: TLS, the checks with curl
# --http2), where each HTTP/2 configuration must also carry 200 requests of h2load, all 2xx.
# cluster/test.sh runs it with the debug gateway.
#   cluster/bench/peers/self-check.sh [GATEWAY_BINARY]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../subject-env.sh"
"$here/../setup.sh" >&2
python3 -m unittest discover -s "$here" -p 'test_*.py'
out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/portcullis-peers-check.XXXXXX")}
export CHECKS_ONLY=1
for proto in h1 h2; do
    export PROTO=$proto OUT=$out/$proto
    if [ $# -ge 1 ]; then subject_env "$(realpath "$1")"; fi
    "$here/run-peers.sh"
done
