#!/usr/bin/env python3
"""A client holding a certificate of the CA a gateway's `tls.client_ca` names, with connections of
every kind open when the operator replaces that CA and reloads (the gateway tests' attacker).

  client_trust_peer.py PORT SERVER_CA CERT KEY CLIENT_CA NEW_CA GATEWAY_PID replace|rollover

Opens, all with the certificate: a kept-alive HTTP/1.1 connection (one GET /partners/x), an
HTTP/1.1 GET /partners/drip/100, an HTTP/2 connection with GET /partners/drip/100 (stream 1) and
GET /open/drip/100 (stream 3: a route that does not require a certificate) — responses that
never end — a WebSocket on /bound-ws (requires one) and one on /open-ws (does not), and a
connection with 500 GET /partners/x pipelined. Then puts NEW_CA in CLIENT_CA ("replace"), or
NEW_CA after the CA there ("rollover": a bundle keeping the old CA), sends SIGHUP, opens stream 5
(GET /open/x) on the HTTP/2 connection before reading what the gateway sent since, and prints one
line per connection saying what became of it. Exits 77 without `websockets`/`h2`.
"""
import http.client
import os
import shutil
import signal
import socket
import ssl
import sys
import time

try:
    import h2.config
    import h2.connection
    import h2.events
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect
except ImportError:
    sys.exit(77)

port, server_ca, cert, key, client_ca, new_ca, pid, mode = sys.argv[1:9]
port = int(port)


def context(alpn):
    made = ssl.create_default_context(cafile=server_ca)
    made.load_cert_chain(cert, key)
    made.set_alpn_protocols(alpn)
    return made


def tls_socket(alpn):
    return context(alpn).wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="localhost")


# Kept alive, idle at the reload.
kept = http.client.HTTPSConnection("localhost", port, context=context(["http/1.1"]), timeout=5)


def get_kept():
    try:
        kept.request("GET", "/partners/x")
        response = kept.getresponse()
        response.read()
        return str(response.status)
    except Exception as error:
        return "closed:" + type(error).__name__


print("kept-before", get_kept(), flush=True)

# An HTTP/1.1 response that never ends.
drip = tls_socket(["http/1.1"])
drip.sendall(b"GET /partners/drip/100 HTTP/1.1\r\nHost: localhost\r\n\r\n")
first = drip.recv(65536)
print("drip-before", first.split(b"\r\n", 1)[0].decode(), flush=True)

# The same over HTTP/2.
h2_socket = tls_socket(["h2"])
assert h2_socket.selected_alpn_protocol() == "h2", h2_socket.selected_alpn_protocol()
h2c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
h2c.initiate_connection()


def h2_get(stream, path):
    h2c.send_headers(stream, [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", path)], end_stream=True)
    h2_socket.sendall(h2c.data_to_send())


h2_get(1, "/partners/drip/100")
h2_get(3, "/open/drip/100")


h2_buffer = bytearray()
h2_gone = False  # a GOAWAY came: h2 takes any later frame as an error, so they are read raw


def h2_frames():
    """The whole frames buffered so far: (type, flags, stream id, the frame's bytes)."""
    while len(h2_buffer) >= 9:
        length = int.from_bytes(h2_buffer[0:3], "big")
        if len(h2_buffer) < 9 + length:
            return
        frame = bytes(h2_buffer[: 9 + length])
        del h2_buffer[: 9 + length]
        yield frame[3], frame[4], int.from_bytes(frame[5:9], "big") & 0x7FFFFFFF, frame


def h2_events(seconds):
    """What the HTTP/2 connection brought for `seconds`, or until it closed ("eof")."""
    global h2_gone
    seen = []
    end = time.time() + seconds
    while time.time() < end:
        h2_socket.settimeout(max(0.05, end - time.time()))
        try:
            data = h2_socket.recv(65536)
        except socket.timeout:
            break
        except (ConnectionError, ssl.SSLError):
            seen.append("eof")
            break
        if not data:
            seen.append("eof")
            break
        h2_buffer.extend(data)
        for kind, flags, stream, frame in h2_frames():
            if h2_gone:
                if kind == 0x3:
                    seen.append(f"reset:{stream}")
                elif kind == 0x0:
                    seen.append(f"ended:{stream}" if flags & 0x1 else f"data:{stream}")
                elif kind == 0x1:
                    seen.append(f"headers:{stream}")
                elif kind == 0x7:
                    seen.append("goaway")
                continue
            for event in h2c.receive_data(frame):
                if isinstance(event, h2.events.ResponseReceived):
                    seen.append(f"status:{event.stream_id}:" + dict(event.headers).get(b":status", b"").decode())
                elif isinstance(event, h2.events.DataReceived):
                    h2c.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    seen.append(f"data:{event.stream_id}")
                elif isinstance(event, h2.events.StreamReset):
                    seen.append(f"reset:{event.stream_id}")
                elif isinstance(event, h2.events.StreamEnded):
                    seen.append(f"ended:{event.stream_id}")
                elif isinstance(event, h2.events.ConnectionTerminated):
                    seen.append("goaway")
                    h2_gone = True
        pending = h2c.data_to_send()
        if pending:
            try:
                h2_socket.sendall(pending)
            except (ConnectionError, ssl.SSLError):
                seen.append("eof")
                break
    return seen


before = h2_events(0.5)
print("h2-before", ",".join(sorted(set(before))), flush=True)

# WebSockets: one on a route requiring the certificate, one on a route that does not.
ws_bound = connect(f"wss://localhost:{port}/bound-ws/a", ssl=context(["http/1.1"]), open_timeout=5).__enter__()
ws_open = connect(f"wss://localhost:{port}/open-ws/a", ssl=context(["http/1.1"]), open_timeout=5).__enter__()
for ws in (ws_bound, ws_open):
    ws.send("hello")
    assert ws.recv(timeout=5) == "hello"
print("ws-before ok", flush=True)

# 500 requests pipelined across the reload: never idle, so quiescing alone cannot close it.
pipelined = tls_socket(["http/1.1"])
pipelined.sendall(b"GET /partners/x HTTP/1.1\r\nHost: localhost\r\n\r\n" * 500)
replies = pipelined.makefile("rb")
statuses = []


def reply():
    line = replies.readline()
    if not line:
        return False
    statuses.append(int(line.split()[1]))
    length = 0
    while True:
        header = replies.readline()
        if header in (b"\r\n", b""):
            break
        name, _, value = header.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    replies.read(length)
    return True


reply()  # the gateway is at work on the pipeline when the reload comes

if mode == "rollover":
    with open(client_ca, "a") as bundle, open(new_ca) as added:
        bundle.write(added.read())
else:
    shutil.copyfile(new_ca, client_ca)
os.kill(int(pid), signal.SIGHUP)
time.sleep(0.5)
# A request that crosses the gateway's GOAWAY (sent before reading it): refused on its own.
h2_get(5, "/open/x")

try:
    while reply():
        pass
except Exception:
    pass
# Answered 200 until the reload, then 403 (a request admitted before the connection heard of
# it), then closed: "pipelined <200s> <others> <others all 403 and after every 200>".
first_other = next((i for i, s in enumerate(statuses) if s != 200), len(statuses))
others = statuses[first_other:]
print("pipelined", statuses.count(200), len(others), all(s == 403 for s in others), flush=True)

# The never-ending responses: cut, or still running after 3 s.
drip.settimeout(3)
ticks_after = 0
ended = "running"
deadline = time.time() + 3
while time.time() < deadline:
    try:
        data = drip.recv(65536)
    except socket.timeout:
        break
    except (ConnectionError, ssl.SSLError):
        ended = "cut"
        break
    if not data:
        ended = "cut"
        break
    ticks_after += data.count(b"tick")
print("drip-after", ended, flush=True)

after_h2 = h2_events(3)
print("h2-after", ",".join(sorted(set(after_h2))), flush=True)
# Stream 3 goes on after the stream that crossed the GOAWAY was refused.
print("h2-later", ",".join(sorted(set(h2_events(1)))), flush=True)


def ws_state(ws):
    try:
        ws.send("again")
        return "echo" if ws.recv(timeout=3) == "again" else "other"
    except ConnectionClosed as closed:
        received = closed.rcvd
        return f"closed:{received.code if received else '-'}:{received.reason if received else ''}"
    except TimeoutError:
        return "silent"


print("ws-bound", ws_state(ws_bound), flush=True)
print("ws-open", ws_state(ws_open), flush=True)
print("kept-after", get_kept(), flush=True)
