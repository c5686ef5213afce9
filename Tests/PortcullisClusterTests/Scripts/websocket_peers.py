#!/usr/bin/env python3
"""Real WebSocket peers for the gateway's WebSocket tests (Python `websockets`).

  websocket_peers.py server --port-file F --log F
      An echo server on 127.0.0.1 (port written to F). Every handshake it receives is appended
      to the log as a line "path authorization-present", and "path closed" when that WebSocket
      ends. A path containing "reject" is answered 403 (a failing upstream handshake); one
      containing "slow" is answered after half a second (one containing "slower" after 3 s; "path left before the answer" is logged
      when the gateway closed the connection meanwhile, else "path answering"); one containing "huge" gets an X-Big field
      of 8 000 backslashes in its answer (19 KB in HPACK's Huffman code, 19 bits each); one
      containing "hop" names X-Internal-Hop in its Connection field and sends it (a field for
      the gateway's hop only).
      Beside it, a listener a connect to hangs on (port written to F.stuck), and a raw WebSocket server (port written to F.raw) for closes at a frame boundary:
      after its 101 it sends the first half of one 200 000-byte binary frame (STREAM_SIZE), waits
      for the gateway's close frame, logs "path gateway-close CODE masked|unmasked", then sends
      the frame's second half.

  websocket_peers.py clients --plan P --out O --ready R --done D [--hold S]
      Opens the plan's connections ({"url", "token", "send_after_ready", "integrity", "stream"};
      "delay" (s before opening); "half_close": after the echo, the header of a close frame whose payload
      never follows); with "http2": {"port", "path", "shared", "window", "early", "end_early"} instead of "url", a
      WebSocket over HTTP/2 (RFC 8441, `H2WebSocket`; "shared": several on one HTTP/2 connection; "early": a text
      message sent before the 200, whose echo is read first; "end_early": the stream ended before the 200),
      echoes a text and a 1 KiB binary message on each ("integrity": also a fragmented message, a
      ping with a payload and a 70 000-byte message; "stream": instead, reads the raw server's
      200 000-byte message), touches R, then records every close (code, reason, Unix time)
      until file D exists or S seconds pass. Connections still open then echo again. Writes the
      results to O as JSON. Exits 77 when `websockets` is missing (the test is then skipped).
"""
import argparse
import asyncio
import base64
import hashlib
import json
import os
import socket
import sys
import time

try:
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions
    import h2.settings
    import websockets
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.frames import Opcode
    from websockets.protocol import Protocol, Side, State
except ImportError:
    sys.exit(77)


class H2Connection:
    """One HTTP/2 connection (python-hyper's h2, prior knowledge over TCP) carrying WebSockets
    by extended CONNECT (RFC 8441); each stream's bytes go to and from websockets' own sans-I/O
    protocol (`Protocol`), so the frames are a real WebSocket implementation's."""

    @classmethod
    async def open(cls, port, window=None):
        self = cls()
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        if window is not None:
            # A client that gives the gateway no window for its streams' DATA.
            self.conn.local_settings = h2.settings.Settings(
                client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.conn.initiate_connection()
        self.streams = {}
        self.settings = asyncio.get_running_loop().create_future()
        self.window = asyncio.Event()
        self.flush()
        self.task = asyncio.create_task(self.read_loop())
        self.remote_settings = await asyncio.wait_for(self.settings, 5)
        return self

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    async def read_loop(self):
        # Fed one frame at a time: h2 takes a GOAWAY for the connection's end and raises on the
        # frames after it (a drain's PING), which would lose the events of the frames before it
        # in the same read (a close frame).
        buffer = b""
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                buffer += data
                while len(buffer) >= 9 and len(buffer) >= 9 + int.from_bytes(buffer[:3], "big"):
                    size = 9 + int.from_bytes(buffer[:3], "big")
                    frame, buffer = buffer[:size], buffer[size:]
                    for event in self.conn.receive_data(frame):
                        self.handle(event)
                self.flush()
        except (ConnectionError, h2.exceptions.ProtocolError):
            pass
        if not self.settings.done():
            self.settings.set_exception(ConnectionError("closed before SETTINGS"))
        for ws in list(self.streams.values()):
            ws.ended(reset=True)

    def handle(self, event):
        if isinstance(event, h2.events.RemoteSettingsChanged) and not self.settings.done():
            self.settings.set_result({int(k): v.new_value for k, v in event.changed_settings.items()})
        elif isinstance(event, h2.events.WindowUpdated):
            self.window.set()
        ws = self.streams.get(getattr(event, "stream_id", None))
        if ws is None:
            return
        if isinstance(event, h2.events.ResponseReceived):
            ws.response(dict(event.headers))
        elif isinstance(event, h2.events.DataReceived):
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            ws.data(event.data)
        elif isinstance(event, h2.events.StreamEnded):
            ws.ended(reset=False)
        elif isinstance(event, h2.events.StreamReset):
            ws.ended(reset=True)

    async def websocket(self, path, token, abort_after=None, early=None, end_early=False):
        stream_id = self.conn.get_next_available_stream_id()
        ws = H2WebSocket(self, stream_id)
        self.streams[stream_id] = ws
        headers = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"), (":path", path),
                   (":authority", "127.0.0.1"), ("sec-websocket-version", "13")]
        if token:
            headers.append(("authorization", "Bearer " + token))
        self.conn.send_headers(stream_id, headers)
        self.flush()
        # RFC 8441 lets a client send at once, before the server's 200.
        if early is not None:
            ws.protocol.send_text(early.encode())
            await ws.pump()
        if end_early:
            self.conn.end_stream(stream_id)
            self.flush()
        if abort_after is not None:
            await asyncio.sleep(abort_after)
            self.conn.reset_stream(stream_id)
            self.flush()
            return ws
        await asyncio.wait_for(ws.opened, 10)
        return ws

    async def send(self, stream_id, data, end):
        while data:
            window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.window.clear()
                await asyncio.wait_for(self.window.wait(), 5)
                continue
            self.conn.send_data(stream_id, data[:window])
            data = data[window:]
            self.flush()
        if end:
            self.conn.end_stream(stream_id)
            self.flush()

    def close(self):
        self.task.cancel()
        self.writer.close()


class H2WebSocket:
    """The part of websockets' connection API the plans use: send, recv, ping, close,
    wait_closed, close_code and close_reason, and the response's status and fields."""

    def __init__(self, h2conn, stream_id):
        self.h2 = h2conn
        self.stream_id = stream_id
        self.protocol = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
        loop = asyncio.get_running_loop()
        self.opened = loop.create_future()
        self.closed = loop.create_future()
        self.messages = asyncio.Queue()
        self.pongs = []
        self.fragments = None
        self.status = None
        self.headers = {}
        self.stream_ended = False
        self.writing = asyncio.Lock()

    def response(self, headers):
        self.status = int(headers.get(":status", 0))
        self.headers = headers
        if not self.opened.done():
            self.opened.set_result(self.status)

    def data(self, data):
        self.protocol.receive_data(data)
        self.dispatch()

    def ended(self, reset):
        self.stream_ended = True
        self.reset = reset
        if not self.opened.done():
            self.opened.set_result(0)
        self.protocol.receive_eof()
        self.dispatch()
        if not self.closed.done():
            self.closed.set_result(None)
        self.messages.put_nowait(None)

    def dispatch(self):
        for frame in self.protocol.events_received():
            if frame.opcode == Opcode.PONG:
                for payload, waiter in list(self.pongs):
                    if payload == frame.data and not waiter.done():
                        waiter.set_result(None)
            elif frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                self.fragments = (frame.opcode, [frame.data])
            elif frame.opcode == Opcode.CONT and self.fragments:
                self.fragments[1].append(frame.data)
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT) and frame.fin and self.fragments:
                opcode, parts = self.fragments
                self.fragments = None
                payload = b"".join(parts)
                self.messages.put_nowait(payload.decode() if opcode == Opcode.TEXT else payload)
        asyncio.ensure_future(self.pump())

    async def pump(self):
        async with self.writing:
            for chunk in self.protocol.data_to_send():
                if self.stream_ended and chunk:
                    continue
                try:
                    await self.h2.send(self.stream_id, chunk, end=not chunk)
                except Exception:
                    pass

    @property
    def close_code(self):
        return self.protocol.close_code

    @property
    def close_reason(self):
        return self.protocol.close_reason

    async def send(self, message):
        if self.protocol.state is not State.OPEN:
            raise ConnectionClosed(None, None)
        if isinstance(message, list):
            for i, part in enumerate(message):
                fin = i == len(message) - 1
                data = part.encode() if isinstance(part, str) else part
                if i == 0:
                    (self.protocol.send_text if isinstance(part, str) else self.protocol.send_binary)(data, fin=fin)
                else:
                    self.protocol.send_continuation(data, fin=fin)
        elif isinstance(message, str):
            self.protocol.send_text(message.encode())
        else:
            self.protocol.send_binary(message)
        if self.protocol.state is not State.OPEN:
            raise ConnectionClosed(None, None)
        await self.pump()

    async def recv(self):
        message = await self.messages.get()
        if message is None:
            self.messages.put_nowait(None)
            raise ConnectionClosed(None, None)
        return message

    async def ping(self, data):
        waiter = asyncio.get_running_loop().create_future()
        self.pongs.append((data, waiter))
        self.protocol.send_ping(data)
        await self.pump()
        return waiter

    async def wait_closed(self):
        await self.closed

    async def close(self):
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(1000, "")
            await self.pump()
        try:
            await asyncio.wait_for(self.closed, 2)
        except asyncio.TimeoutError:
            pass


STREAM_SIZE = 200_000


def stream_payload():
    return bytes(i % 251 for i in range(STREAM_SIZE))


async def run_raw_server(log, port_file):
    """One frame streamed in two halves around the gateway's close frame (no library: a
    WebSocket library would answer the close frame itself, in the middle of the frame)."""

    async def handle(reader, writer):
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        path = head.split(" ")[1]
        key = next(line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.lower().startswith("sec-websocket-key:"))
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        if "badaccept" in path:
            accept = base64.b64encode(hashlib.sha1(b"not the key").digest()).decode()
        if "te403" in path:
            # A refusal whose body is in a transfer coding the gateway does not decode.
            writer.write(b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                         + b"a\r\n\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\r\n0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        if "interimflood" in path:
            # Interim heads without end (here 1 000) before the 101.
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" * 1000)
        if "answer200" in path:
            # Not a WebSocket server: a 200 whose body looks like a frame.
            body = bytes([0x81, 0x05]) + b"hello"
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
            log.write(f"{path} answered 200\n")
            writer.close()
            return
        writer.write(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode())
        payload = stream_payload()
        frame = bytes([0x82, 127]) + STREAM_SIZE.to_bytes(8, "big") + payload
        half = len(frame) // 2
        writer.write(frame[:half])
        await writer.drain()
        try:
            first = await asyncio.wait_for(reader.readexactly(2), 10)
            length = first[1] & 0x7F
            mask = await reader.readexactly(4) if first[1] & 0x80 else None
            body = bytearray(await reader.readexactly(length))
            if mask:
                body = bytearray(b ^ mask[i % 4] for i, b in enumerate(body))
            code = int.from_bytes(body[:2], "big") if first[0] == 0x88 and length >= 2 else -1
            log.write(f"{path} gateway-close {code} {'masked' if mask else 'unmasked'}\n")
        except (asyncio.TimeoutError, asyncio.IncompleteReadError):
            log.write(f"{path} gateway-close none\n")
        writer.write(frame[half:])
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with open(port_file + ".tmp", "w") as f:
        f.write(str(port))
    os.rename(port_file + ".tmp", port_file)
    return server


def run_stuck_listener(port_file):
    """A listener whose accept queue is full and never drained: a connect to it hangs (the
    kernel drops its SYNs) until the connecting side gives up or closes it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(port))
    os.rename(port_file + ".tmp", port_file)
    return listener, fillers


async def run_server(args):
    log = open(args.log, "a", buffering=1)
    raw = await run_raw_server(log, args.port_file + ".raw")
    stuck = run_stuck_listener(args.port_file + ".stuck")

    async def process_request(connection, request):
        auth = "auth" if request.headers.get("Authorization") else "noauth"
        log.write(f"{request.path} {auth}\n")
        if "slow" in request.path:
            await asyncio.sleep(3 if "slower" in request.path else 0.5)
            if connection.transport.is_closing():
                log.write(f"{request.path} left before the answer\n")
            else:
                log.write(f"{request.path} answering\n")
        if "reject" in request.path:
            response = connection.respond(403, "upstream says")
            return process_response(connection, request, response)
        return None

    def process_response(connection, request, response):
        if "huge" in request.path:
            response.headers["X-Big"] = "\\" * 8000
        if "hop" in request.path:
            upgrade = "Connection" in response.headers
            del response.headers["Connection"]
            response.headers["Connection"] = ("Upgrade, " if upgrade else "") + "X-Internal-Hop"
            response.headers["X-Internal-Hop"] = "secret"
        return response

    async def echo(ws):
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass
        log.write(f"{ws.request.path} closed\n")

    async with serve(echo, "127.0.0.1", 0, process_request=process_request, process_response=process_response, max_size=None, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.rename(tmp, args.port_file)
        await asyncio.Future()


async def echo_ok(ws):
    await ws.send("hello")
    if await asyncio.wait_for(ws.recv(), 5) != "hello":
        return False
    payload = bytes(range(256)) * 4
    await ws.send(payload)
    return await asyncio.wait_for(ws.recv(), 5) == payload


async def integrity_ok(ws):
    """Messages whose bytes must arrive unchanged: fragments, a ping's payload, a 64-bit length."""
    await ws.send(["frag", "mented ", "h\u00e9llo \u2603"])
    if await asyncio.wait_for(ws.recv(), 5) != "fragmented h\u00e9llo \u2603":
        return "fragmented text"
    await ws.send([b"\x00\x01", bytes(range(256)), b"\xff"])
    if await asyncio.wait_for(ws.recv(), 5) != b"\x00\x01" + bytes(range(256)) + b"\xff":
        return "fragmented binary"
    pong = await ws.ping(b"ping-payload")
    await asyncio.wait_for(pong, 5)
    big = bytes((i * 7) % 256 for i in range(70_000))
    await ws.send(big)
    if await asyncio.wait_for(ws.recv(), 5) != big:
        return "70 000-byte message"
    return "ok"


async def run_clients(args):
    plan = json.load(open(args.plan))
    results = [dict(index=i) for i in range(len(plan))]
    sockets = [None] * len(plan)
    streams = []
    h2conns = {}

    async def open_one(i, entry):
        await asyncio.sleep(entry.get("delay", 0))
        if entry.get("abort_after") and not entry.get("http2"):
            # A raw upgrade request whose connection closes before any answer.
            reader, writer = await asyncio.open_connection(entry["host"], entry["port"])
            writer.write((f"GET {entry['path']} HTTP/1.1\r\nHost: {entry['host']}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {entry['token']}\r\n\r\n").encode())
            await writer.drain()
            await asyncio.sleep(entry["abort_after"])
            writer.close()
            results[i]["open_status"] = 0
            return
        if entry.get("http2"):
            target = entry["http2"]
            key = target.get("shared", f"own-{i}")
            if key not in h2conns:
                h2conns[key] = asyncio.ensure_future(H2Connection.open(target["port"], target.get("window")))
            try:
                conn = await h2conns[key]
            except ConnectionError as error:
                results[i]["open_status"] = 0
                results[i]["open_error"] = str(error)
                return
            results[i]["enable_connect_protocol"] = conn.remote_settings.get(8, 0)
            if entry.get("abort_after"):
                await conn.websocket(target["path"], entry.get("token"), abort_after=entry["abort_after"])
                results[i]["open_status"] = 0
                return
            try:
                ws = await conn.websocket(target["path"], entry.get("token"), early=target.get("early"),
                                          end_early=target.get("end_early", False))
            except (h2.exceptions.ProtocolError, asyncio.TimeoutError) as error:
                results[i]["open_status"] = -1
                results[i]["open_error"] = type(error).__name__
                return
            results[i]["open_status"] = ws.status
            results[i]["open_fields"] = sorted(k for k in ws.headers if not k.startswith(":"))
            if ws.status != 200:
                return
            if target.get("early") is not None:
                try:
                    results[i]["early_echo"] = await asyncio.wait_for(ws.recv(), 5) == target["early"]
                except (ConnectionClosed, asyncio.TimeoutError):
                    results[i]["early_echo"] = False
            if target.get("end_early"):
                sockets[i] = ws
                return
        else:
            headers = {"Authorization": "Bearer " + entry["token"]} if entry.get("token") else {}
            try:
                ws = await connect(entry["url"], additional_headers=headers, max_size=None, compression=None,
                                   open_timeout=10, ping_interval=None, close_timeout=2)
            except InvalidStatus as error:
                results[i]["open_status"] = error.response.status_code
                results[i]["open_fields"] = sorted(k.lower() for k in error.response.headers)
                return
            results[i]["open_status"] = 101
            results[i]["open_fields"] = sorted(k.lower() for k in ws.response.headers)
        sockets[i] = ws
        if entry.get("stream"):
            streams.append(asyncio.create_task(read_stream(i, ws)))
            return
        try:
            results[i]["echo"] = await echo_ok(ws)
            if entry.get("integrity"):
                results[i]["integrity"] = await integrity_ok(ws)
        except (ConnectionClosed, asyncio.TimeoutError):
            results[i]["echo"] = False
        if entry.get("half_close"):
            # A close frame's header announcing 125 bytes of payload, which never come.
            ws.transport.write(bytes([0x88, 0x80 | 125]) + os.urandom(4))

    async def read_stream(i, ws):
        try:
            message = await ws.recv()
            results[i]["stream_bytes"] = len(message)
            results[i]["stream_intact"] = message == stream_payload()
        except ConnectionClosed:
            results[i]["stream_bytes"] = 0

    await asyncio.gather(*(open_one(i, e) for i, e in enumerate(plan)))

    async def watch(i, ws):
        await ws.wait_closed()
        if results[i].get("open_at_end"):
            return
        results[i]["closed_at"] = time.time()
        results[i]["close_code"] = ws.close_code
        results[i]["close_reason"] = ws.close_reason

    watchers = [asyncio.create_task(watch(i, ws)) for i, ws in enumerate(sockets) if ws is not None]
    open(args.ready, "w").close()
    for i, ws in enumerate(sockets):
        size = plan[i].get("send_after_ready")
        if ws is not None and size:
            try:
                await ws.send(b"x" * size)
                results[i]["echo_big"] = len(await asyncio.wait_for(ws.recv(), 5)) == size
            except (ConnectionClosed, asyncio.TimeoutError):
                results[i]["echo_big"] = False
    deadline = time.time() + args.hold
    while time.time() < deadline and not os.path.exists(args.done):
        if all(t.done() for t in watchers):
            break
        await asyncio.sleep(0.005)
    for task in streams:
        try:
            await asyncio.wait_for(task, 5)
        except asyncio.TimeoutError:
            pass
    for i, ws in enumerate(sockets):
        if plan[i].get("stream"):
            if ws is not None and "closed_at" not in results[i]:
                results[i]["open_at_end"] = True
                await ws.close()
            continue
        if ws is not None and "closed_at" not in results[i]:
            results[i]["open_at_end"] = True
            try:
                results[i]["echo_after"] = await echo_ok(ws)
            except (ConnectionClosed, asyncio.TimeoutError):
                results[i]["echo_after"] = False
            await ws.close()
    for t in watchers:
        t.cancel()
    with open(args.out + ".tmp", "w") as f:
        json.dump(results, f)
    os.rename(args.out + ".tmp", args.out)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    server = sub.add_parser("server")
    server.add_argument("--port-file", required=True)
    server.add_argument("--log", required=True)
    clients = sub.add_parser("clients")
    clients.add_argument("--plan", required=True)
    clients.add_argument("--out", required=True)
    clients.add_argument("--ready", required=True)
    clients.add_argument("--done", required=True)
    clients.add_argument("--hold", type=float, default=10)
    args = parser.parse_args()
    asyncio.run(run_server(args) if args.command == "server" else run_clients(args))


if __name__ == "__main__":
    main()
