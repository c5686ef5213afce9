#!/usr/bin/env bash
# The main job: install what is missing, build (release), start a local cluster on loopback
# and run the narrated demo.
set -euo pipefail
cd "$(dirname "$0")/.."
./cluster/setup.sh release
.build/release/portcullis --version
