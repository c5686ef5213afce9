#!/usr/bin/env python3
"""An HTTP/2 upstream (h2c, prior knowledge) built on python-hyper's h2 with its own checks of
what it sends turned off, so that it can answer what a well-behaved server never would.

    h2_upstream.py PORT [HEADER_TABLE_SIZE [INITIAL_WINDOW_SIZE]]

With HEADER_TABLE_SIZE its SETTINGS allow the gateway an HPACK table that large (0: the default),
with INITIAL_WINDOW_SIZE each stream's window starts that small.

Answers by path:
  /slow              200 with body "slow" after 1.5 s
  /bad-field         a response head with an upper-case field name (malformed, RFC 9113 §8.2.1)
  /bad-length        a response whose body is shorter than its content-length (malformed, §8.1.1)
  /bad-status        a response head whose :status is "20" (malformed, §8.3.2), the stream left open
  /spaced-value      200 "ok" whose head has a value with a space at each end (x-spaced)
  /control-value     a response head with a control character (0x01) in a value
  /framing-trailers  200 "ok", then trailers carrying fields no trailer may (content-length,
                     content-type, set-cookie, location) beside x-kept and a grpc-message that
                     ends in a space (as grpc servers send "invalid argument: ")
  /only-framing-trailers
                     200 "ok", then trailers with content-length alone
  /huge-head         200 "ok" whose head has 8 000 backslashes in x-big, sent without Huffman
                     coding (8 KB, within the gateway's 16 KB limits; 19 KB Huffman-coded, as
                     swift-nio-http2 codes every value: 19 bits each)
  /huge-trailers     200 "ok", then trailers with the same x-big
  /echo              200 with the request's body, once it ends
  /tiny-echo         the same, the body sent back as 1-byte DATA frames, every third padded with
                     2 bytes, in writes of up to 4 096 as the windows allow
  /status-999        a response head whose :status is 999 (outside 100-599)
  /content-204       a 204 with a body
  /goaway-after      200 "ok", then GOAWAY (NO_ERROR, last stream 2^31-1); the connection is
                     left open
  /goaway-hold...    never answers, and sends GOAWAY (NO_ERROR, last stream this one); what the
                     gateway sends on the connection from then on is ignored, and the connection
                     stays open
  /table-size        200 whose body is the HPACK table size the gateway's header blocks set
  /window-flood      200, then 2 000 WINDOW_UPDATE frames of 1 on the stream, then "ok"
  /connection-window-flood
                     200, then 2 000 WINDOW_UPDATE frames of 1 on the connection (stream 0),
                     then "ok"
  /sink              never answers, and never opens the stream's window (or the connection's)
                     again: what the gateway forwards waits in the gateway
  /late-window       opens the stream's window for nothing the gateway sends during the first
                     2.5 s, then for all of it and by 1 MiB more; once the request ends answers
                     200 with a JSON body: the DATA frames and bytes its body came in
  /tiny-data         200, then 1-byte DATA frames as long as the stream's window allows, one a
                     write about every 0.1 ms, for up to 30 s; prints "tiny-data N" with how
                     many were sent
  /big-data          200, then 16 KiB DATA frames as the stream's window allows, 4 MiB in all or
                     for up to 20 s
  /refuse-reset/ID   the first time this path comes, once the request has ended: RST_STREAM
                     REFUSED_STREAM (unprocessed, RFC 9113 §8.7); afterwards, 200 with the
                     SHA-256 of the request's body, in hex
  /refuse-goaway/ID  the same, refused by a GOAWAY (NO_ERROR) whose last stream is the one before;
                     the connection is then left open, as for /goaway-hold
  /refuse-early/ID   the same as /refuse-reset/, refused as soon as the head arrives
  /refuse-always/ID  refused as /refuse-reset/ each time
  anything else      200 with body "ok" at once

Like swift-nio-http2's and Netty's servers (rapid reset, CVE-2023-44487), it answers more than
200 RST_STREAM frames on a connection within 30 s with GOAWAY ENHANCE_YOUR_CALM and closes it.

Prints "ready" once listening, "connection N" as the Nth connection is accepted, "lost" as one
closes, "empty-data" for
each empty DATA frame that does not end its stream, "reset CODE" for each RST_STREAM, and
"refused PATH BYTES" or "answered PATH BYTES" for each /refuse-… request (BYTES: its body's,
0 when refused early).
"""
import asyncio
import contextlib
import hashlib
import sys
import time

import h2.config
import h2.settings
import h2.connection
import h2.events
import h2.exceptions
import hyperframe.frame

connections = 0
# How often each /refuse-… path came, over all connections.
refusals = {}
TABLE_SIZE = int(sys.argv[2]) or None if len(sys.argv) > 2 else None
INITIAL_WINDOW = int(sys.argv[3]) if len(sys.argv) > 3 else None


@contextlib.contextmanager
def plain_strings(conn):
    """Header blocks sent meanwhile code their strings as they are (hpack codes all with Huffman)."""
    encode = conn.encoder.encode
    conn.encoder.encode = lambda headers, huffman=True: encode(headers, huffman=False)
    try:
        yield
    finally:
        conn.encoder.encode = encode


class Upstream(asyncio.Protocol):
    def connection_made(self, transport):
        global connections
        connections += 1
        print(f"connection {connections}", flush=True)
        self.transport = transport
        config = h2.config.H2Configuration(client_side=False, validate_outbound_headers=False,
                                           normalize_outbound_headers=False, validate_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config=config)
        self.bodies = {}
        self.sinks = set()
        self.tiny_echoes = set()
        self.resets = []
        if TABLE_SIZE is not None:
            self.conn.local_settings.header_table_size = TABLE_SIZE
            self.conn.decoder.max_allowed_table_size = TABLE_SIZE
        self.late = {}
        self.holding = False
        # /refuse-… streams waiting for their request's end: path, and whether to refuse it.
        self.refusable = {}
        self.conn.initiate_connection()
        if INITIAL_WINDOW is not None:
            # Sent as a SETTINGS change of its own: set before initiate_connection, h2 would apply
            # it once acknowledged without having sent it.
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: INITIAL_WINDOW})
        self.flush()

    def connection_lost(self, exc):
        print("lost", flush=True)

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.transport.write(data)

    def data_received(self, data):
        if self.holding:
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as error:
            print(f"protocol-error {error!r}", flush=True)
            self.flush()
            self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                path = dict(event.headers).get(b":path", b"").decode()
                if path.startswith("/refuse-"):
                    seen = refusals.get(path, 0)
                    refusals[path] = seen + 1
                    refuse = seen == 0 or path.startswith("/refuse-always/")
                    if refuse and path.startswith("/refuse-early/"):
                        print(f"refused {path} 0", flush=True)
                        self.conn.reset_stream(event.stream_id, error_code=7)
                        continue
                    self.bodies[event.stream_id] = b""
                    self.refusable[event.stream_id] = (path, refuse)
                    if event.stream_ended:
                        self.refuse_or_echo(event.stream_id)
                        if self.holding:
                            return
                elif path in ("/echo", "/tiny-echo"):
                    self.bodies[event.stream_id] = b""
                    if path == "/tiny-echo":
                        self.tiny_echoes.add(event.stream_id)
                    if event.stream_ended:
                        self.send(event.stream_id, [(":status", "200")], b"")
                else:
                    self.answer(event.stream_id, path)
            elif isinstance(event, h2.events.DataReceived):
                if not event.data and event.stream_ended is None:
                    print("empty-data", flush=True)
                late = self.late.get(event.stream_id)
                if late is not None:
                    late["frames"] += 1
                    late["bytes"] += len(event.data)
                    if late["open"]:
                        self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    else:
                        late["unacked"] += event.flow_controlled_length
                    if event.stream_ended is not None:
                        body = f'{{"frames": {late["frames"]}, "bytes": {late["bytes"]}}}'.encode()
                        self.send(event.stream_id, [(":status", "200")], body)
                elif event.flow_controlled_length and event.stream_id not in self.sinks:
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if event.stream_id in self.bodies:
                    self.bodies[event.stream_id] += event.data
                    if event.stream_ended is not None and event.stream_id in self.refusable:
                        self.refuse_or_echo(event.stream_id)
                        if self.holding:
                            return
                    elif event.stream_ended is not None and event.stream_id in self.tiny_echoes:
                        asyncio.get_running_loop().create_task(self.tiny_echo(event.stream_id, self.bodies.pop(event.stream_id)))
                    elif event.stream_ended is not None:
                        self.send(event.stream_id, [(":status", "200")], self.bodies.pop(event.stream_id))
            elif isinstance(event, h2.events.StreamReset):
                print(f"reset {event.error_code}", flush=True)
                now = time.monotonic()
                self.resets = [t for t in self.resets if now - t <= 30] + [now]
                if len(self.resets) > 200:
                    print("goaway enhance-your-calm", flush=True)
                    self.conn.close_connection(error_code=0xb)
                    self.flush()
                    self.transport.close()
                    return
        self.flush()

    def answer(self, stream, path):
        if path == "/slow":
            asyncio.get_running_loop().call_later(1.5, self.send, stream, [(":status", "200")], b"slow")
        elif path == "/bad-field":
            self.send(stream, [(":status", "200"), ("X-Upper", "1")], b"bad")
        elif path == "/bad-status":
            # The stream is left open, so that the gateway's reset of it shows.
            self.conn.send_headers(stream, [(":status", "20")])
        elif path == "/interim-flood":
            for _ in range(1000):
                self.conn.send_headers(stream, [(":status", "100")])
            self.send(stream, [(":status", "200")], b"late")
        elif path == "/bad-length":
            self.send(stream, [(":status", "200"), ("content-length", "10")], b"bad")
        elif path == "/spaced-value":
            self.send(stream, [(":status", "200"), ("x-spaced", " both ends ")], b"ok")
        elif path == "/control-value":
            self.send(stream, [(":status", "200"), ("x-control", "a\x01b")], b"bad")
        elif path == "/status-999":
            self.send(stream, [(":status", "999")], b"odd")
        elif path == "/content-204":
            self.send(stream, [(":status", "204")], b"content")
        elif path == "/goaway-after":
            self.send(stream, [(":status", "200")], b"ok")
            self.conn.close_connection(error_code=0, last_stream_id=2**31 - 1)
            self.flush()
        elif path.startswith("/goaway-hold"):
            if self.holding:
                return  # one GOAWAY per connection, for the first such stream in a read
            self.conn.close_connection(error_code=0, last_stream_id=stream)
            self.flush()
            self.holding = True
        elif path == "/table-size":
            self.send(stream, [(":status", "200")], str(self.conn.decoder.header_table_size).encode())
        elif path in ("/window-flood", "/connection-window-flood"):
            self.conn.send_headers(stream, [(":status", "200")])
            self.flush()
            target = stream if path == "/window-flood" else 0
            flood = hyperframe.frame.WindowUpdateFrame(target, window_increment=1).serialize() * 2000
            self.transport.write(flood)
            self.conn.send_data(stream, b"ok", end_stream=True)
            self.flush()
        elif path == "/sink":
            self.sinks.add(stream)
        elif path == "/late-window":
            self.late[stream] = {"frames": 0, "bytes": 0, "unacked": 0, "open": False}
            asyncio.get_running_loop().call_later(2.5, self.open_late, stream)
        elif path == "/tiny-data":
            self.conn.send_headers(stream, [(":status", "200")])
            self.flush()
            asyncio.get_running_loop().create_task(self.tiny_data(stream))
        elif path == "/big-data":
            self.conn.send_headers(stream, [(":status", "200")])
            self.flush()
            asyncio.get_running_loop().create_task(self.big_data(stream))
        elif path == "/huge-head":
            with plain_strings(self.conn):
                self.send(stream, [(":status", "200"), ("x-big", "\\" * 8000)], b"ok")
        elif path == "/huge-trailers":
            self.conn.send_headers(stream, [(":status", "200")])
            self.conn.send_data(stream, b"ok")
            with plain_strings(self.conn):
                self.conn.send_headers(stream, [("x-big", "\\" * 8000)], end_stream=True)
            self.flush()
        elif path in ("/framing-trailers", "/only-framing-trailers"):
            self.conn.send_headers(stream, [(":status", "200")])
            self.conn.send_data(stream, b"ok")
            trailers = [("content-length", "99")]
            if path == "/framing-trailers":
                trailers += [("content-type", "text/x-evil"), ("set-cookie", "a=b"), ("location", "https://evil.example/"),
                             ("x-kept", "1"), ("grpc-message", "invalid argument: ")]
            self.conn.send_headers(stream, trailers, end_stream=True)
            self.flush()
        else:
            self.send(stream, [(":status", "200")], b"ok")

    def open_late(self, stream):
        late = self.late[stream]
        late["open"] = True
        if late["unacked"]:
            self.conn.acknowledge_received_data(late["unacked"], stream)
        # Then the stream's window is opened wide: what waits comes at once, as from a server
        # whose reader caught up, not through a window of 16 bytes.
        self.conn.increment_flow_control_window(1 << 20, stream_id=stream)
        self.flush()

    async def tiny_echo(self, stream, body):
        self.conn.send_headers(stream, [(":status", "200")])
        self.flush()
        sent = 0
        deadline = time.monotonic() + 20
        while sent < len(body) and time.monotonic() < deadline and not self.transport.is_closing():
            try:
                stream_window = self.conn.local_flow_control_window(stream)
            except h2.exceptions.StreamClosedError:
                return
            out = []
            while sent < len(body) and len(out) < 4096:
                padded = sent % 3 == 0
                length = 4 if padded else 1
                if length > stream_window:
                    break
                flags = ["PADDED"] if padded else []
                frame = hyperframe.frame.DataFrame(stream, data=body[sent:sent + 1], flags=flags)
                if padded:
                    frame.pad_length = 2
                out.append(frame.serialize())
                stream_window -= length
                sent += 1
            if out:
                # Written past h2's bookkeeping (as /tiny-data): its windows charged as if h2 had sent them.
                charged = self.conn.local_flow_control_window(stream) - stream_window
                self.conn._get_stream_by_id(stream).outbound_flow_control_window -= charged
                self.conn.outbound_flow_control_window -= charged
                self.transport.write(b"".join(out))
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(0.002)
        self.conn.end_stream(stream)
        self.flush()

    async def tiny_data(self, stream):
        sent = 0
        deadline = time.monotonic() + 30
        frame = hyperframe.frame.DataFrame(stream, data=b"x")
        one = frame.serialize()
        # One frame a write, paced: the gateway joins the small DATA frames that arrive together in
        # one read, so frames that reach its queues one by one must come one read each. The pause
        # blocks the loop (asyncio's timers are too coarse), for 0.1 ms.
        while time.monotonic() < deadline and not self.transport.is_closing():
            try:
                window = min(self.conn.local_flow_control_window(stream), 1)
            except h2.exceptions.StreamClosedError:
                break
            if window > 0:
                # Written past h2's bookkeeping, which would take as long per frame as the gateway:
                # its windows are charged as if h2 had sent them.
                self.conn._get_stream_by_id(stream).outbound_flow_control_window -= window
                self.conn.outbound_flow_control_window -= window
                self.transport.write(one * window)
                sent += window
                time.sleep(0.0001)
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(0.005)
        print(f"tiny-data {sent}", flush=True)

    async def big_data(self, stream):
        sent = 0
        deadline = time.monotonic() + 20
        while sent < 4 << 20 and time.monotonic() < deadline and not self.transport.is_closing():
            try:
                window = min(self.conn.local_flow_control_window(stream), 16384, (4 << 20) - sent)
                if window > 0:
                    self.conn.send_data(stream, b"x" * window, end_stream=sent + window == 4 << 20)
                    self.flush()
                    sent += window
                    continue
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                return
            await asyncio.sleep(0.01)

    def refuse_or_echo(self, stream):
        path, refuse = self.refusable.pop(stream)
        body = self.bodies.pop(stream)
        if not refuse:
            print(f"answered {path} {len(body)}", flush=True)
            return self.send(stream, [(":status", "200")], hashlib.sha256(body).hexdigest().encode())
        print(f"refused {path} {len(body)}", flush=True)
        if path.startswith("/refuse-goaway/"):
            self.conn.close_connection(error_code=0, last_stream_id=max(stream - 2, 0))
            self.flush()
            self.holding = True
        else:
            self.conn.reset_stream(stream, error_code=7)
            self.flush()

    def send(self, stream, headers, body):
        try:
            self.conn.send_headers(stream, headers)
            self.conn.send_data(stream, body, end_stream=True)
        except h2.exceptions.StreamClosedError:
            return
        self.flush()


async def main():
    server = await asyncio.get_running_loop().create_server(Upstream, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
