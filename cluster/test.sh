#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test against real
# redis-server, control-plane and gateway processes on loopback, then a 30 s fuzz smoke of the
# JOSE parsers (docs/fuzzing.md).
#
# Suites run one after another (--no-parallel): many of them start clusters of processes and
# check timeouts, and on a 2-core machine running them all at once starves their event loops.
set -euo pipefail
cd "$(dirname "$0")/.."

./cluster/setup.sh debug
export PORTCULLIS_BIN="$PWD/.build/debug/portcullis"
swift build --build-tests
swift test --skip-build --no-parallel
./cluster/fuzz-smoke.sh 30
