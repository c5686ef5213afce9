"""Plays a client of a gateway's admin port that floods it, while timing public requests.

    admin_flood.py pipeline ADMIN_PORT PUBLIC_PORT COUNT
        one connection sends COUNT pipelined `GET /metrics` and never reads; meanwhile public
        `GET /` requests are timed. Prints {"sent": bytes, "closed": bool, "public_ms": [...],
        "public_status": [...]}.
"""
import json
import socket
import sys
import threading
import time

mode, admin_port, public_port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
result = {"public_ms": [], "public_status": []}


def public_requests(rounds):
    for _ in range(rounds):
        started = time.monotonic()
        status = 0
        try:
            with socket.create_connection(("127.0.0.1", public_port), timeout=10) as conn:
                conn.sendall(b"GET / HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
        except OSError:
            status = -1
        result["public_ms"].append(round((time.monotonic() - started) * 1000, 1))
        result["public_status"].append(status)
        time.sleep(0.2)


if mode == "pipeline":
    conn = socket.create_connection(("127.0.0.1", admin_port), timeout=5)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    payload = b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n" * count
    timer = threading.Thread(target=public_requests, args=(10,))
    timer.start()
    sent = 0
    closed = False
    try:
        while sent < len(payload):
            sent += conn.send(payload[sent:sent + 65536])
    except (socket.timeout, OSError):
        pass
    timer.join()
    # Closed by the gateway: a read ends (EOF or reset) once what it had sent is drained.
    conn.settimeout(1)
    try:
        for _ in range(100000):
            if not conn.recv(1 << 20):
                closed = True
                break
    except socket.timeout:
        closed = False
    except OSError:
        closed = True
    result.update(sent=sent, closed=closed)
print(json.dumps(result))
