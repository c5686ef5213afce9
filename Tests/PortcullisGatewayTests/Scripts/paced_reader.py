#!/usr/bin/env python3
"""A TCP client that reads what a server sends at a steady pace (ClientProgressTests).

    paced_reader.py PORT BYTES_PER_SECOND SECONDS [RCVBUF]

Connects to 127.0.0.1:PORT (with SO_RCVBUF set to RCVBUF bytes, if given, so that what it
acknowledges follows what it reads) and, for SECONDS, reads BYTES_PER_SECOND a second in reads of
at most 16 KiB every 50 ms (0: reads nothing, then reads what it was sent for up to 2 s). Prints one JSON
object: "received" (bytes read), "closed_at" (seconds from the start at which it saw the server
close or reset the connection, or null; a reader that reads nothing sees it only at the end) and
"reset" (whether a read failed with a connection reset).
"""
import json
import socket
import sys
import time


def main():
    port, rate, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if len(sys.argv) > 4:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(sys.argv[4]))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    start = time.monotonic()
    received, closed_at, reset = 0, None, False
    if rate == 0:
        time.sleep(seconds)
        # Then reads what it has been sent, for at most 2 s: a reset ends it once what arrived
        # before it is read; a plain close once what the server's kernel still held is.
        sock.settimeout(0.5)
        drain_end = time.monotonic() + 2
        while closed_at is None and time.monotonic() < drain_end:
            try:
                data = sock.recv(1 << 20)
                received += len(data)
                if not data:
                    closed_at = time.monotonic() - start
            except socket.timeout:
                break
            except ConnectionResetError:
                reset, closed_at = True, time.monotonic() - start
    while rate > 0 and closed_at is None and time.monotonic() - start < seconds:
        time.sleep(0.05)
        want = min(16384, int(rate * (time.monotonic() - start)) - received)
        if want <= 0:
            continue
        sock.settimeout(0.05)
        try:
            data = sock.recv(want)
            if not data:
                closed_at = time.monotonic() - start
            received += len(data)
        except socket.timeout:
            pass
        except ConnectionResetError:
            reset, closed_at = True, time.monotonic() - start
        except OSError:
            closed_at = time.monotonic() - start
    print(json.dumps({"received": received, "closed_at": None if closed_at is None else round(closed_at, 2),
                      "reset": reset}), flush=True)


if __name__ == "__main__":
    main()
