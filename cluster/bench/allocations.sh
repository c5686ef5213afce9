#!/usr/bin/env bash
# Heap allocations per request of a gateway binary under the RS256 load of the peer harness
# (cluster/bench/peers): counts calls to libc malloc and to the Swift runtime's swift_allocObject
# with perf uprobes while wrk runs, and divides by the requests the gateway's /metrics counted in
# the same window. Needs root (uprobes); adds the two probes and removes them again.
#   cluster/bench/allocations.sh .build/release/portcullis
#   CONFIG=subject-es256 WINDOW=5 cluster/bench/allocations.sh old-binary
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 GATEWAY_BINARY" >&2; exit 2; }
bin=$(realpath "$1")
. "$(dirname "$0")/subject-env.sh"
command -v perf >/dev/null || "$root/cluster/bench/setup.sh" linux-perf >&2
libc=$(ldd "$bin" | awk '$1 ~ /^libc\.so/ {print $3; exit}')
swiftcore=$(ldd "$bin" | awk '$1 ~ /^libswiftCore\.so/ {print $3; exit}') alloc=swift_allocObject
if [ -z "$swiftcore" ]; then
  # Linked statically (cluster/build-release.sh): the runtime is inside the binary, where
  # swift_allocObject is a local symbol that perf probe finds by its address only.
  swiftcore=$bin alloc=0x$(nm "$bin" | awk '$3 == "swift_allocObject" {address = $1} END {print address}')
fi
added=()
probe() { # probe EVENT FILE LOCATION: a fresh uprobe (one left by an earlier run may be on another binary)
  perf probe -q -d "$1" 2>/dev/null || true
  perf probe -q -x "$2" "$1=$3" && added+=("$1")
}
probe portcullis_bench:malloc "$libc" malloc
probe portcullis_bench:swift_allocObject "$swiftcore" "$alloc"
log=$(mktemp)
harness=
cleanup() {
  # The harness stops what it started when its run ends (a few seconds after the window).
  [ -n "$harness" ] && wait "$harness" 2>/dev/null
  for event in "${added[@]}"; do perf probe -q -d "$event"; done
  rm -f "$log"
}
trap cleanup EXIT
subject_env "$bin"
config=${CONFIG:-subject-rs256}
CONFIGS=$config DURATION=${DURATION:-20s} WARMUP=2s REPEATS=1 RUN_SPEED=0 QUIET_MAX=30 "$peers/run-peers.sh" >"$log" 2>&1 &
harness=$!
# Once the harness announces the configuration, find its gateway and wait until the load is on.
for _ in $(seq 1 150); do grep -q "config $config" "$log" && break; sleep 1; done
# Only a gateway the harness started counts (another one running the same binary is not ours).
descends_from() {  # descends_from PID ANCESTOR
  local p=$1
  while [ -n "$p" ] && [ "$p" -gt 1 ]; do
    [ "$p" = "$2" ] && return 0
    p=$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null)
  done
  return 1
}
pid=
for _ in $(seq 1 100); do
  for candidate in $(pgrep -f "$bin gateway"); do
    if descends_from "$candidate" "$harness"; then pid=$candidate; break; fi
  done
  [ -n "$pid" ] && break
  sleep 0.1
done
[ -n "$pid" ] || { echo "gateway not running; harness log:" >&2; tail -20 "$log" >&2; exit 1; }
config_file=$(tr '\0' '\n' < "/proc/$pid/cmdline" | sed -n '/^--config$/{n;p}')
admin=$(awk '/^admin_listen:/ {print $2}' "$config_file")
requests() { curl -s "http://$admin/metrics" | awk '/^portcullis_http_requests_total/ {n += $2} END {printf "%d", n}'; }
for _ in $(seq 1 60); do
  first=$(requests); sleep 1
  [ $(($(requests) - first)) -gt 1000 ] && break
done
before=$(requests)
counts=$(perf stat -x, -e portcullis_bench:malloc,portcullis_bench:swift_allocObject -p "$pid" -- sleep "${WINDOW:-5}" 2>&1 >/dev/null)
after=$(requests)
n=$((after - before))
echo "$counts" | awk -F, -v n="$n" -v config="$config" '
  /portcullis_bench:malloc/ {m = $1} /portcullis_bench:swift_allocObject/ {o = $1}
  END {printf "%s: %d requests; per request: malloc %.1f, swift_allocObject %.1f\n", config, n, m / n, o / n}'
