#!/usr/bin/env bash
# Brings the multi-host bed up (cluster/hosts.sh) from a binary, runs every scenario of
# cluster/hosts-test.py and takes the bed down again, whatever happened. Where network namespaces
# cannot be made (not root, no iproute2) it says why and exits 0: the scenarios are skipped, not
# passed — except under CI=true, where a skipped fault scenario fails the run. Logs of a failed
# run are kept and named.
#   cluster/hosts-ci.sh [BINARY]        (default .build/debug/portcullis)
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-.build/debug/portcullis}
work=$(mktemp -d /tmp/portcullis-bed.XXXXXX)
status=0
cluster/hosts.sh up "$work" --binary "$binary" || status=$?
if [ "$status" = 77 ]; then
    echo "hosts-ci: the multi-host scenarios were SKIPPED (see the reason above)"
    rm -rf "$work"
    if [ "${CI:-}" = true ]; then
        echo "hosts-ci: CI=true, so a skipped fault scenario is a failure" >&2
        exit 1
    fi
    exit 0
fi
[ "$status" = 0 ] || { echo "hosts-ci: the bed did not come up; logs in $work/log" >&2; exit 1; }
trap 'cluster/hosts.sh down "$work"' EXIT
if cluster/hosts-test.py "$work"; then
    cluster/hosts.sh down "$work"
    trap - EXIT
    rm -rf "$work"
else
    echo "hosts-ci: scenarios failed; logs in $work/log" >&2
    exit 1
fi
