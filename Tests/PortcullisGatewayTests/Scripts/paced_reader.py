#!/usr/bin/env python3
"""A TCP client that reads what a server sends at a steady pace (ClientProgressTests).

    paced_reader.py PORT BYTES_PER_SECOND SECONDS

Connects to 127.0.0.1:PORT and, for SECONDS, reads BYTES_PER_SECOND a second in reads of at
most 16 KiB every 50 ms (0: reads nothing). Prints one JSON object: "received" (bytes read) and
"closed_at" (seconds from the start at which it saw the server close or reset the connection, or
null; a reader that reads nothing sees nothing).
"""
import json
import socket
import sys
import time


def main():
    port, rate, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    start = time.monotonic()
    received, closed_at = 0, None
    if rate == 0:
        time.sleep(seconds)
    while rate > 0 and closed_at is None and time.monotonic() - start < seconds:
        time.sleep(0.05)
        want = min(16384, int(rate * (time.monotonic() - start)) - received)
        if want <= 0:
            continue
        sock.setblocking(True)
        sock.settimeout(0.05)
        try:
            data = sock.recv(want)
            if not data:
                closed_at = time.monotonic() - start
            received += len(data)
        except socket.timeout:
            pass
        except OSError:
            closed_at = time.monotonic() - start
    print(json.dumps({"received": received, "closed_at": None if closed_at is None else round(closed_at, 2)}), flush=True)


if __name__ == "__main__":
    main()
