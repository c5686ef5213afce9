#!/usr/bin/env bash
# Scale by simulation (issue 17): `portcullis-bench scale` — 20 gateway processes
# (`event_loops: 1`) against one redis-server on loopback — run several times, then the median
# of every figure across the runs. Builds PortcullisBench in release mode, and the gateway too
# unless PORTCULLIS_BIN names a release binary to start. Needs redis-server (cluster/setup.sh).
#   cluster/bench/scale.sh                                  # 3 runs, 20 nodes, join with 1 M revocations
#   RUNS=1 cluster/bench/scale.sh --nodes 10 --entries 0     # further arguments go to `scale`
#   PORTCULLIS_BIN=/path/to/portcullis cluster/bench/scale.sh
# Each run's full output is kept in $OUT (default: a new folder under /tmp); the medians are
# printed at the end as "<figure> <median> (<each run>)".
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${RUNS:-3}
out=${OUT:-$(mktemp -d /tmp/portcullis-scale.XXXXXX)}
mkdir -p "$out"
swift build -c release --product PortcullisBench >"$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
if [ -z "${PORTCULLIS_BIN:-}" ]; then
  swift build -c release --product portcullis >>"$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
  export PORTCULLIS_BIN=$PWD/.build/release/portcullis
fi
bench=$(swift build -c release --show-bin-path)/PortcullisBench
echo "gateway: $PORTCULLIS_BIN; $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq 1 "$runs"); do
  echo "== run $run of $runs ($(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)) =="
  "$bench" scale "$@" | tee "$out/run-$run.txt"
done
echo "== medians over $runs runs (outputs in $out) =="
cat "$out"/run-*.txt | awk '
  $1 == "RESULT" { values[$2] = values[$2] " " $3; count[$2]++ }
  END {
    for (key in values) {
      n = split(substr(values[key], 2), v, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
      median = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
      printf "%s %.3f (%s)\n", key, median, substr(values[key], 2)
    }
  }' | sort
