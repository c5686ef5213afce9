#!/usr/bin/env python3
"""Where an HTTP/2 run's tail latency comes from: reads the per-request logs the peer harness
keeps with KEEP_H2_LOGS=1 (h2load's --log-file: start µs, status, duration µs) and prints, per
run, the rate and mean latency in each STEP-second slice, then p50 and p99 over the whole run and
over the part after SKIP seconds.

    KEEP_H2_LOGS=1 PROTO=h2 H2_SHAPES=64x10 ... cluster/bench/peers/run-peers.sh
    cluster/bench/h2-latency-phases.py OUT/h2load/*.log            # OUT: the run's output folder
    STEP=0.5 SKIP=3 cluster/bench/h2-latency-phases.py OUT/h2load/*.log
"""
import math
import os
import sys


def rank(sorted_durations, q):
    """Nearest-rank percentile in ms (the harness's own rule)."""
    return sorted_durations[max(0, math.ceil(q * len(sorted_durations)) - 1)] / 1000.0


def main():
    step = float(os.environ.get("STEP", "0.2"))
    skip = float(os.environ.get("SKIP", "3"))
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for path in sys.argv[1:]:
        rows = []
        with open(path) as f:
            for line in f:
                fields = line.split("\t")
                if len(fields) >= 3:
                    rows.append((int(fields[0]), int(fields[2])))
        if not rows:
            print(f"{path}: no requests")
            continue
        start = min(r[0] for r in rows)
        slices = {}
        for begun, duration in rows:
            entry = slices.setdefault(int((begun - start) / (step * 1e6)), [0, 0])
            entry[0] += 1
            entry[1] += duration
        whole = sorted(d for _, d in rows)
        later = sorted(d for b, d in rows if b - start >= skip * 1e6)
        print(f"{os.path.basename(path)}: {len(rows)} requests; p50 {rank(whole, 0.5):.1f} ms, p99 {rank(whole, 0.99):.1f} ms"
              + (f"; after {skip:g} s p50 {rank(later, 0.5):.1f} ms, p99 {rank(later, 0.99):.1f} ms" if later else ""))
        print(f"  per {step:g} s (req/s, mean ms): "
              + "  ".join(f"{n / step:.0f} {total / n / 1000:.0f}" for _, (n, total) in sorted(slices.items())))


if __name__ == "__main__":
    main()
