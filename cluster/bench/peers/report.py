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

HTTP/2 rows (PROTO=h2, named <configuration>@<connections>x<streams>) get their own ratios
(ratios_h2): per shape, against h2-nginx of that shape, the subject against its HAProxy peer in
req/s, CPU per request and p99, and issue 18's goals for RS256 with one token.
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


PEER_OF_H2 = {"h2-subject-rs256": "h2-haproxy-jwt-rs256", "h2-subject-hdr-none": "h2-haproxy"}

# Issue 18's goals for HTTP/2 over TLS, RS256, one token: req/s at least these multiples.
H2_GOAL_VS_PEER = 2.0
H2_GOAL_VS_NGINX = 0.7


def medians(rows):
    """{config: {column: median over its runs of the positive values, or None}} for the figures."""
    by_config = {}
    for r in rows:
        by_config.setdefault(r["config"], []).append(r)
    out = {}
    for config, group in by_config.items():
        out[config] = {}
        for column in ("rps", "p50_ms", "p99_ms", "us_per_req"):
            values = [float(r[column]) for r in group if float(r[column]) > 0]
            out[config][column] = statistics.median(values) if values else None
        out[config]["note"] = ",".join(sorted({r["note"] for r in group} - {"-"}))
    return out


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


def ratios_h2(rows):
    m = medians(rows)

    def ratio(a, b):
        return f"{a / b:.2f}" if a and b else "n/a"

    lines = [f"{'config':26} {'req/s':>8} {'p50_ms':>7} {'p99_ms':>7} {'us/req':>7} {'vs nginx':>8}   "
             f"{'HAProxy peer':26} {'peer req/s':>10} {'peer p99':>8} {'vs peer':>7} {'us ratio':>8} note"]
    goals = []
    for label, f in m.items():
        config, _, shape = label.partition("@")
        nginx = m.get(f"h2-nginx@{shape}", {}).get("rps")
        line = (f"{label:26} {f['rps'] or 0:8.0f} {f['p50_ms'] or 0:7.3f} {f['p99_ms'] or 0:7.3f} "
                f"{f['us_per_req'] or 0:7.1f} {ratio(f['rps'], nginx):>8}")
        peer = PEER_OF_H2.get(config)
        if peer:
            p = m.get(f"{peer}@{shape}", dict.fromkeys(("rps", "p99_ms", "us_per_req")))
            line += (f"   {peer + ('' if f'{peer}@{shape}' in m else ' (not run)'):26} {p['rps'] or 0:10.0f} "
                     f"{p['p99_ms'] or 0:8.3f} {ratio(f['rps'], p['rps']):>7} {ratio(f['us_per_req'], p['us_per_req']):>8}")
            if config == "h2-subject-rs256":
                goals.append(goal_line(shape, f, p, nginx))
        else:
            line += " " * 66
        lines.append((line + " " + f["note"]).rstrip())
    lines += [""] + goals + [
        "",
        "vs nginx = req/s / req/s of h2-nginx (nginx's plain HTTP/2 proxy) in the same shape",
        "vs peer  = req/s / req/s of the HAProxy peer over HTTP/2 (RS256 jwt_verify; no token: plain HAProxy)",
        "us ratio = CPU µs per request / the peer's (below 1: cheaper per request)"]
    return "\n".join(lines)


def goal_line(shape, subject, peer, nginx_rps):
    """Issue 18's three HTTP/2 goals for one shape, each with its figure and met / missed."""
    def verdict(value, goal):
        if not value:
            return "n/a"
        return f"{value:.2f} (goal >= {goal}: {'met' if value >= goal else f'missed by {100 * (1 - value / goal):.0f} %'})"
    vs_peer = subject["rps"] / peer["rps"] if subject["rps"] and peer["rps"] else None
    vs_nginx = subject["rps"] / nginx_rps if subject["rps"] and nginx_rps else None
    if subject["p99_ms"] and peer["p99_ms"]:
        p99 = (f"p99 {subject['p99_ms']:.3f} ms vs HAProxy's {peer['p99_ms']:.3f} ms "
               f"(goal below: {'met' if subject['p99_ms'] < peer['p99_ms'] else 'missed'})")
    else:
        p99 = "p99 n/a"
    return (f"goals {shape}: subject-rs256 / haproxy-jwt-rs256 = {verdict(vs_peer, H2_GOAL_VS_PEER)}; "
            f"/ nginx h2 = {verdict(vs_nginx, H2_GOAL_VS_NGINX)}; {p99}")


def main(path):
    rows = read(path)
    print(table(rows))
    print()
    print(f"== medians and ratios (over up to {max((int(r['run']) for r in rows), default=0)} repeats) ==")
    print(ratios_h2(rows) if any("@" in r["config"] for r in rows) else ratios(rows))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results.tsv")
