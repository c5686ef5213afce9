#!/usr/bin/env python3
"""What peers pacing 1-byte pieces toward a side that has stopped reading make the gateway hold,
on plain loopback (the kernel's default socket buffers on the gateway's side, which take their own
share first; the upstream's receive buffer is 4 KiB). Runs the upstream itself on UPSTREAM_PORT; samples the gateway's resident memory (process PID) and
prints the peak growth over the start.

    paced-writes-memory.py MODE GATEWAY_PORT UPSTREAM_PORT PID CONNS SECONDS

Modes (the gateway routes /body, /many and /ws to UPSTREAM_PORT, /ws as a WebSocket route):
  h1-body   CONNS chunked POSTs of /body to an upstream that reads nothing: 100 KB of 1 KiB chunks
            each (the kernel's buffers fill), then 1-byte chunks, one per send, 0.2 ms apart
  h1-response
            CONNS GETs of /many from clients that read nothing; the upstream answers 2 000 000
            1-byte chunks each
  ws        CONNS WebSockets to an upstream that answers the handshake and reads nothing; each
            client sends a frame's header, 300 KB of it, then 1 byte per send, 0.1 ms apart
"""
import base64
import hashlib
import json
import os
import socket
import sys
import time

mode, gateway, upstream, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
conns, seconds = int(sys.argv[5]), float(sys.argv[6])


def resident():
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


def read_head(sock):
    head = b""
    while b"\r\n\r\n" not in head:
        part = sock.recv(1)
        if not part:
            return head
        head += part
    return head


def serve(conn):
    head = read_head(conn)
    if b" /ws" in head:
        key = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key")][0]
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    elif b" /many" in head:
        conn.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        try:
            for _ in range(2000):
                conn.sendall(b"1\r\nx\r\n" * 1000)
        except OSError:
            pass
    # Otherwise (and after the above): read nothing more.


sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "PortcullisGatewayTests", "Scripts"))
from paced_peer import listen  # noqa: E402

# A small receive buffer, so that the kernel's share on the upstream's side is kilobytes rather
# than the megabytes autotuning grows to.
listen(upstream, serve, receive_buffer=4096)
base = resident()
clients = []
for _ in range(conns):
    client = socket.create_connection(("127.0.0.1", gateway))
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if mode == "h1-body":
        client.sendall(b"POST /body HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        fill, piece, gap = 100_000, b"400\r\n" + b"y" * 1024 + b"\r\n", 0.0002
    elif mode == "h1-response":
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.sendall(b"GET /many HTTP/1.1\r\nHost: a\r\n\r\n")
        fill, piece, gap = 0, b"", 0
    else:
        client.sendall(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        assert b" 101 " in read_head(client)
        client.sendall(bytes([0x82, 0xFF]) + (1_000_000).to_bytes(8, "big") + b"\0\0\0\0")
        fill, piece, gap = 300_000, b"y" * 1024, 0.0002
    client.settimeout(0.5)
    sent = 0
    try:
        while sent < fill:
            client.sendall(piece)
            sent += len(piece)
            time.sleep(gap)
    except socket.timeout:
        pass
    client.setblocking(False)
    clients.append(client)

one = {"h1-body": b"1\r\nx\r\n", "ws": b"z"}.get(mode)
peak, paced = 0, 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    for client in clients:
        if one:
            try:
                client.send(one)
                paced += 1
            except OSError:
                pass
    time.sleep(0.0002 if mode == "h1-body" else 0.0001 if one else 0.05)
    peak = max(peak, resident() - base)
print(json.dumps({"mode": mode, "connections": conns, "paced_sends": paced, "peak_growth_mb": round(peak / 1e6, 1)}))
