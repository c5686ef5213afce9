#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test against real
# redis-server, control-plane and gateway processes on loopback, model-checks the revocation
# protocol with spin, then a 30 s fuzz smoke of the JOSE parsers (docs/fuzzing.md).
#
# Suites run one after another (--no-parallel): many of them start clusters of processes and
# check timeouts, and on a 2-core machine running them all at once starves their event loops.
set -euo pipefail
cd "$(dirname "$0")/.."

./cluster/setup.sh debug
export PORTCULLIS_BIN="$PWD/.build/debug/portcullis"
swift build --build-tests
swift test --skip-build --no-parallel
# The revocation protocol as a model (docs/model.md): the design must pass, and each defence,
# removed, must let the checker find the attack.
./cluster/model/check.sh
for broken in MERGE SEQMAC ACKMAC HOLES; do
    if ./cluster/model/check.sh --broken "$broken" >/dev/null 2>&1; then
        echo "model: removing the $broken defence went unnoticed by the checker" >&2
        exit 1
    fi
    echo "model: without $broken the checker finds the attack, as it should"
done
./cluster/fuzz-smoke.sh 30
