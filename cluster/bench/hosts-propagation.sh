#!/usr/bin/env bash
# Revocation propagation across the multi-host bed (cluster/hosts.sh: network namespaces, 1 ms
# one-way latency into every Redis, Sentinel and control-plane host), with Redis over TLS and in
# plaintext, alternated so that both see the same machine load. Each round brings a fresh bed up,
# times N revocations (the control plane's `?wait` answer: each gateway's own write-to-applied
# latency) and takes it down. Needs root and `ip netns`.
#   cluster/bench/hosts-propagation.sh [BINARY]        # default: a release build (cluster/build-release.sh)
#   ROUNDS=3 CHANGES=300 cluster/bench/hosts-propagation.sh .build/release/portcullis
set -euo pipefail
cd "$(dirname "$0")/../.."
binary=${1:-}
if [ -z "$binary" ]; then
    cluster/build-release.sh --product portcullis >/dev/null
    binary=.build/release/portcullis
fi
work=$(mktemp -d /tmp/portcullis-bedbench.XXXXXX)
trap 'cluster/hosts.sh down "$work/bed" 2>/dev/null || true; rm -rf "$work"' EXIT
# One archive for every round.
cluster/package.sh --binary "$binary" --out "$work/dist" >"$work/package.log" 2>&1 || { cat "$work/package.log" >&2; exit 1; }
archive=$(tail -n 1 "$work/package.log")
for round in $(seq 1 "${ROUNDS:-3}"); do
    for tls in 1 0; do
        PCX_REDIS_TLS=$tls cluster/hosts.sh up "$work/bed" --archive "$archive" >/dev/null 2>"$work/up.log" \
            || { cat "$work/up.log" >&2; exit 1; }
        result=$(cluster/hosts-test.py "$work/bed" measure "${CHANGES:-300}")
        echo "round $round: ${result%%$'\n'*}"
        cluster/hosts.sh down "$work/bed"
    done
done
