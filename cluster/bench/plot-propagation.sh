#!/usr/bin/env bash
# Plots revocation propagation samples written by `portcullis-bench cluster --samples FILE`
# (lines "<node> <milliseconds>", node "all" = slowest of the nodes) as a CDF, into a PNG.
#   cluster/bench/plot-propagation.sh SAMPLES OUT.png
set -euo pipefail
samples=$1 out=$2
command -v gnuplot >/dev/null || "$(dirname "$0")/setup.sh" >&2   # installs gnuplot-nox
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
nodes=$(cut -d' ' -f1 "$samples" | sort -u)
plots=""
for node in $nodes; do
    grep "^$node " "$samples" | cut -d' ' -f2 | sort -g | awk '{v[NR]=$1} END {for (i=1;i<=NR;i++) print v[i], i/NR}' >"$work/$node.dat"
    title=$node; [ "$node" = all ] && title="all nodes applied (slowest node)"
    width=1; [ "$node" = all ] && width=3
    plots="$plots${plots:+, }'$work/$node.dat' using 1:2 with steps lw $width title '$title'"
done
gnuplot <<GP
set terminal pngcairo size 900,520 font ",11" noenhanced
set output '$out'
set title 'Revocation propagation: durable write in Redis -> applied on the node (3 gateways under load)'
set xlabel 'milliseconds'
set ylabel 'fraction of revocations'
set logscale x
set xrange [0.1:10]
set yrange [0:1.02]
set grid
set key top left
set arrow from 5, graph 0 to 5, graph 1 nohead dt 2 lc rgb 'red'
set label 'goal: p99 <= 5 ms' at 5.2, 0.5 tc rgb 'red'
plot $plots
GP
echo "wrote $out"
