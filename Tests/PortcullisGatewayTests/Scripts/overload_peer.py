#!/usr/bin/env python3
"""Drives a gateway into overload with HTTP/2 clients that keep their windows shut, and watches
what a well-behaved client sees meanwhile (MemoryOverloadTests, cluster/bench/h2-held-memory.sh).

    overload_peer.py PORT PATH CONNS STREAMS SECONDS

First a probe connection (normal windows) is opened. Then CONNS
connections, each announcing SETTINGS_INITIAL_WINDOW_SIZE 0 (they take no DATA), send STREAMS
GETs of PATH each (against h2_upstream.py's /tiny-data the gateway then holds what the upstream
sends). For SECONDS the probe sends a GET of /probe every 0.1 s on its connection. Prints one JSON
object: "resets" (attack streams reset, by error code), "first_reset_s" and "last_reset_s" (by
error code, seconds from the attack's start), "attack_closed" (attack connections the gateway closed), "probe"
(a list of [seconds, status, error] per probe GET answered; error is the JSON body's "error"),
"probe_goaway" (the error code of a GOAWAY the probe's connection got, or null) and "probe_closed".
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from h2_peer import Peer, held_streams  # noqa: E402
from hyperframe.frame import HeadersFrame  # noqa: E402


def status(peer, stream):
    for block in peer.headers.get(stream, []):
        if ":status" in block:
            return int(block[":status"])
    return None


def error(peer, stream):
    try:
        return json.loads(peer.bodies.get(stream, b"{}")).get("error")
    except ValueError:
        return None


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    conns, streams, seconds = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    probe = Peer(port)
    probe.pump(0.05)
    probe_stream = 1
    asked = {}
    start = time.monotonic()
    attackers = held_streams(port, path, conns, streams)
    first_reset, last_reset, seen = {}, {}, set()
    next_probe = start
    end = start + seconds
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_probe and not probe.closed:
            probe.send(HeadersFrame(probe_stream, probe.request_block(path="/probe"), flags=["END_HEADERS", "END_STREAM"]))
            asked[probe_stream] = now - start
            probe_stream += 2
            next_probe = now + 0.1
        probe.pump(0.005)
        for peer in attackers:
            peer.pump(0.002)
        at = round(time.monotonic() - start, 2)
        for index, peer in enumerate(attackers):
            for stream, code in peer.resets.items():
                if (index, stream) not in seen:
                    seen.add((index, stream))
                    first_reset.setdefault(str(code), at)
                    last_reset[str(code)] = at
    probe.pump(0.5)
    answered = [[round(at, 2), status(probe, stream), error(probe, stream)]
                for stream, at in sorted(asked.items()) if status(probe, stream) is not None]
    resets = {}
    for peer in attackers:
        for code in peer.resets.values():
            resets[str(code)] = resets.get(str(code), 0) + 1
    print(json.dumps({"resets": resets, "first_reset_s": first_reset, "last_reset_s": last_reset,
                      "attack_closed": sum(1 for p in attackers if p.closed), "probe": answered,
                      "probe_goaway": probe.goaway, "probe_closed": probe.closed}))


if __name__ == "__main__":
    main()
