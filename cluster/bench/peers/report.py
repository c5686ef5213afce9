#!/usr/bin/env python3
"""The peer benchmark's table and ratios, from its results.tsv (the harness prints them at the
end of a run; rerun on a kept file with `report.py OUT/results.tsv`).

Columns of the table: one line per measured run. `proxy%` is the CPU of the process under test
(for the subject its whole process tree) in % of one core; `us/req` is that CPU per request,
`1core_max` the requests/s one dedicated core could serve at that cost. `foreign%` is the CPU
used meanwhile by processes the harness did not start: above ~10 the run was disturbed.

The ratios: medians over the repeats of each configuration; `vs nginx` divides req/s by the
plain nginx proxy's of the same run; a subject row is also divided by its HAProxy peer (same
algorithm, same token mode; the unauthenticated row by plain HAProxy), in req/s and in CPU per
request (`us ratio` below 1: the subject is cheaper per request).
"""
import csv
import statistics
import sys

COLUMNS = ["config", "tokens", "run", "rps", "p50_ms", "p99_ms", "non2xx", "errors", "cpu0", "cpu1",
           "proxy", "backend", "wrk", "foreign", "us_per_req", "note"]

PEER_OF = {
    "subject-hdr-none": "haproxy",
    "subject-rs256": "haproxy-jwt-rs256",
    "subject-rs256-rotate": "haproxy-jwt-rs256-rotate",
    "subject-es256": "haproxy-jwt-es256",
    "subject-es256-rotate": "haproxy-jwt-es256-rotate",
}


def read(path):
    with open(path) as f:
        return [row for row in csv.DictReader(f, delimiter="\t")]


def table(rows, heading=""):
    lines = [heading] if heading else []
    lines.append(f"{'config':26} {'tokens':6} {'run':3} {'req/s':>8} {'p50_ms':>7} {'p99_ms':>7} {'non2xx':>6} "
                 f"{'errors':>6} {'cpu0%':>5} {'cpu1%':>5} {'proxy%':>6} {'backend%':>8} {'wrk%':>5} "
                 f"{'foreign%':>8} {'us/req':>7} {'1core_max':>9} note")
    for r in rows:
        us = float(r["us_per_req"])
        lines.append(f"{r['config']:26} {r['tokens']:6} {r['run']:3} {float(r['rps']):8.0f} {float(r['p50_ms']):7.3f} "
                     f"{float(r['p99_ms']):7.3f} {r['non2xx']:>6} {r['errors']:>6} {r['cpu0']:>5} {r['cpu1']:>5} "
                     f"{r['proxy']:>6} {r['backend']:>8} {r['wrk']:>5} {r['foreign']:>8} {us:7.1f} "
                     f"{(1e6 / us if us > 0 else 0):9.0f} {'' if r['note'] == '-' else r['note']}")
    return "\n".join(lines)


def ratios(rows):
    by_config = {}
    for r in rows:
        by_config.setdefault(r["config"], []).append(r)

    def median(config, column):
        values = [float(r[column]) for r in by_config.get(config, []) if float(r[column]) > 0]
        return statistics.median(values) if values else None

    def ratio(a, b):
        return f"{a / b:.2f}" if a is not None and b else "n/a"

    nginx = median("nginx", "rps")
    lines = [f"{'config':26} {'req/s':>8} {'us/req':>7} {'vs nginx':>8}   {'HAProxy peer':34} {'peer req/s':>10} "
             f"{'peer us':>7} {'vs peer':>7} {'us ratio':>8} note"]
    for config, group in by_config.items():
        rps, us = median(config, "rps"), median(config, "us_per_req")
        line = f"{config:26} {rps or 0:8.0f} {us or 0:7.1f} {ratio(rps, nginx):>8}"
        peer = PEER_OF.get(config)
        if peer:
            peer_rps, peer_us = median(peer, "rps"), median(peer, "us_per_req")
            line += (f"   {peer + ('' if peer in by_config else ' (not run)'):34} {peer_rps or 0:10.0f} {peer_us or 0:7.1f} "
                     f"{ratio(rps, peer_rps):>7} {ratio(us, peer_us):>8}")
        else:
            line += " " * 74
        notes = sorted({r["note"] for r in group} - {"-"})
        lines.append((line + " " + ",".join(notes)).rstrip())
    verify, claims_only = median("haproxy-jwt-rs256", "us_per_req"), median("haproxy-claims-rs256", "us_per_req")
    if verify and claims_only:
        lines += ["", f"HAProxy's jwt_verify alone, RS256: {verify - claims_only:.1f} us per request "
                      "(haproxy-jwt-rs256 minus haproxy-claims-rs256)"]
    lines += ["",
              "vs nginx = req/s / req/s of nginx's plain proxy in this run" + ("" if nginx else " (nginx not run)"),
              "vs peer  = req/s / req/s of the HAProxy peer (same algorithm and tokens; no token: plain HAProxy)",
              "us ratio = CPU µs per request / the peer's (below 1: cheaper per request)"]
    return "\n".join(lines)


def main(path):
    rows = read(path)
    print(table(rows))
    print()
    print(f"== medians and ratios (over up to {max((int(r['run']) for r in rows), default=0)} repeats) ==")
    print(ratios(rows))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results.tsv")
