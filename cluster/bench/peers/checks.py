#!/usr/bin/env python3
"""The accept/reject checks: every token of fixtures.py's cases.tsv sent to a validator, its
status compared with what that case expects (fixtures.CASES). A benchmark row is only worth
something if the proxy behind it refuses what it must; the harness runs these before any load.

  checks.py CASES_TSV URL [--peer] [--alg RS256|ES256] [--public URL] [--h2 CA_FILE]

URL is the full URL the tokens go to; --peer scores with the HAProxy peer's column (one
algorithm per peer: pass --alg), otherwise with a correct validator's; --public also expects
2xx from an unauthenticated route; --h2 sends every request over HTTP/2 (https URLs, curl,
trusting CA_FILE), and an answer in another protocol counts as none. Prints the table; exits 1
when a scored case fails.
"""
import argparse
import http.client
import subprocess
import sys
import urllib.parse


def status_of(url, token, timeout=5.0):
    """The HTTP status the URL answers a GET with `Authorization: Bearer token` (none when
    token is empty); 0 when the connection failed or closed without an answer."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("GET", parts.path or "/", headers={"Authorization": "Bearer " + token} if token else {})
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        connection.close()


def h2_status_of(url, token, ca_file, timeout=5.0):
    """Like status_of, over HTTP/2 with TLS (curl --http2, ALPN; ca_file trusted): 0 also when
    the server answered in another HTTP version than 2."""
    argv = ["curl", "-sS", "-o", "/dev/null", "--http2", "--cacert", ca_file, "--max-time", str(timeout),
            "-w", "%{http_code} %{http_version}"]
    if token:
        argv += ["-H", "Authorization: Bearer " + token]
    result = subprocess.run(argv + [url], capture_output=True, text=True)
    code, _, version = result.stdout.partition(" ")
    return int(code) if result.returncode == 0 and code.isdigit() and version.strip() == "2" else 0


def matches(want, status):
    if want == "2xx":
        return 200 <= status < 300
    if want == "4xx":
        return 400 <= status < 500
    return status == int(want)


def load_cases(path, alg=None):
    """[(alg, case, token, want, peer_want)] from cases.tsv, optionally of one algorithm."""
    rows = []
    with open(path) as f:
        for line in f:
            case_alg, case, token_file, want, peer_want = line.rstrip("\n").split("\t")
            if alg is None or case_alg == alg:
                with open(token_file) as t:
                    rows.append((case_alg, case, t.read().strip(), want, peer_want))
    return rows


def run(cases, url, peer=False, public_url=None, out=sys.stdout, fetch=status_of):
    """Sends every case with fetch(url, token) (status_of, or h2_status_of bound to its CA file),
    prints one line each and a total; returns the number of failures."""
    failed = passed = 0
    print(f"{'alg':6} {'case':22} {'want':4} {'got':4} result   ({url})", file=out)
    checks = [("-", "public-route-no-token", "", "2xx", "2xx")] if public_url else []
    for alg, case, token, want, peer_want in checks + cases:
        expected = peer_want if peer else want
        status = fetch(public_url if case == "public-route-no-token" else url, token)
        if expected == "-":
            result = "(not scored)"
        elif matches(expected, status):
            result, passed = "ok", passed + 1
        else:
            result, failed = "FAIL", failed + 1
        print(f"{alg:6} {case:22} {expected:4} {status:<4} {result}", file=out)
    print(f"checks: {passed} ok, {failed} failed", file=out)
    return failed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases")
    parser.add_argument("url")
    parser.add_argument("--peer", action="store_true", help="score with the HAProxy peer's expectations")
    parser.add_argument("--alg", choices=("RS256", "ES256"), help="only this algorithm's cases")
    parser.add_argument("--public", help="an unauthenticated URL that must answer 2xx")
    parser.add_argument("--h2", metavar="CA_FILE", help="over HTTP/2 with TLS, trusting this certificate")
    args = parser.parse_args()
    fetch = (lambda url, token: h2_status_of(url, token, args.h2)) if args.h2 else status_of
    sys.exit(1 if run(load_cases(args.cases, args.alg), args.url, args.peer, args.public, fetch=fetch) else 0)


if __name__ == "__main__":
    main()
