#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test against real
# redis-server and gateway processes on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

./cluster/setup.sh debug
export PORTCULLIS_BIN="$PWD/.build/debug/portcullis"
swift test
