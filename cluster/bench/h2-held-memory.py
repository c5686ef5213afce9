#!/usr/bin/env python3
"""What clients that keep their HTTP/2 windows shut make the gateway hold: CONNS connections of
STREAMS streams each, every stream a GET of PATH from a client whose SETTINGS_INITIAL_WINDOW_SIZE
is 0 (it takes no DATA); samples the gateway's resident memory (process PID) for SECONDS and prints
the peak growth over the start, with the resets the clients saw.

    h2-held-memory.py PORT PID PATH CONNS STREAMS SECONDS
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "PortcullisGatewayTests", "Scripts"))
from h2_peer import held_streams  # noqa: E402

port, pid, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conns, streams, seconds = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])


def resident():
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


base = resident()
peers = held_streams(port, path, conns, streams, settle=0.05)
peak = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    for peer in peers:
        peer.pump(0.01)
    peak = max(peak, resident() - base)
print(json.dumps({"connections": conns, "streams": streams, "peak_growth_mb": round(peak / 1e6, 1),
                  "streams_reset": sum(len(p.resets) for p in peers)}))
