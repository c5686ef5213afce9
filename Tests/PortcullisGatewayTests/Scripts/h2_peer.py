#!/usr/bin/env python3
"""A raw HTTP/2 client for the gateway's HTTP/2 tests: frames built with hyperframe and header
blocks with hpack (the libraries under python-hyper's h2), written to a plain socket so that a
test can send what a well-behaved client library never would.

    h2_peer.py MODE PORT [ARG]

Prints one JSON object describing what the server did. Modes:
  rapid-reset N        open and reset N streams as fast as possible (CVE-2023-44487)
  reset-after-response N
                       N GETs of /public/n one after another, each reset (CANCEL) once its response
                       has ended, as gRPC clients reset calls whose status came before their end;
                       a GET of /public/delay/8000 open on stream 1 throughout
  continuation N       one request whose header block is spread over N CONTINUATION frames
  ping-flood N         N PING frames
  settings-flood N     N empty SETTINGS frames
  streams N            open N streams at once, each a GET of /delay/1000
  abandon N            N connections one after another, each opening 90 streams (GETs of /slow)
                       and closing once the server has seen them (0.3 s), without a reset
  authority HOST       a request whose :authority is `a.test` and Host is HOST
  cookies              a request with two cookie fields; prints the response body
  empty-data PATH      a POST of PATH whose body is two empty DATA frames, then "x" ending it (a GET
                       of /other on stream 3 between the empty frames)
  malformed-beside     a GET of /delay/1000 on stream 1, then on stream 3 a request with an
                       upper-case field name (malformed, RFC 9113 §8.2.1); waits for stream 1
  extended-connect PATH PROTOCOL [NAME=VALUE ...]
                       an extended CONNECT (RFC 8441) with that :protocol, sent whether or not the
                       server's SETTINGS enabled it; prints its answer and the server's settings
  raw FIELDS [BODY]    one request with exactly the header block FIELDS (a JSON list of [name,
                       value], pseudo-fields included, sent as given); with BODY its HEADERS do not
                       end the stream and one DATA frame carrying BODY does. Then a GET of
                       /after on stream 3 (whether the connection lives on)
  window-flood N       a GET of /public/delay/2000 on stream 1, then N WINDOW_UPDATE frames of 1
                       on it; prints whether the server closed the connection
  connection-flood N   N WINDOW_UPDATE frames of 1 on the connection (stream 0), then a GET of
                       /public/after on stream 3; prints how many frames were sent and the answers
  early-answered PATH N
                       N POSTs of PATH, ten at a time, each answered before its body; 0.3 s on, a
                       byte of body for each, then a GET of /public/after
  goaway-flood N       a POST whose body is up to N 1-byte DATA frames, each followed by a GOAWAY
                       (last stream 0, NO_ERROR), then a GET of /public/after on stream 3; prints
                       how many frames were sent
  closed-stream-flood N
                       a GET of /public/first on stream 1, answered; then N times an RST_STREAM
                       and nine WINDOW_UPDATE frames on stream 1, now closed (at most 4 000
                       RST_STREAM a second), then a GET of /public/after on stream 3; prints how
                       many frames were sent and the answers
  chunked-reader PATH CHUNK
                       a GET of PATH read as Go's net/http client reads a body CHUNK bytes at a
                       time: 4 MiB stream windows, the connection's opened by 1 GiB, and a
                       connection-level and a stream-level WINDOW_UPDATE for every CHUNK bytes
                       consumed, after the stream's end too; then a GET of /public/after on the
                       same connection; prints the answers and how many updates were sent
  dribble PATH N       a GET of PATH whose stream window is kept at a byte or so: for each DATA frame
                       received, one WINDOW_UPDATE of 1 on the stream (four in flight), the
                       connection's window opened by 1 GiB; stops after N frames or when the
                       server ends the connection; prints how many frames came
  table-size           announces SETTINGS_HEADER_TABLE_SIZE 2^32-1, then 20 GETs one after
                       another; prints the largest table size the server's header blocks set
  small-frames PATH N [BULK [STREAMS]]
                       STREAMS (1) POSTs of PATH whose bodies are up to N 1-byte DATA frames in
                       all, as the windows allow: each stream's first BULK in writes of 4 096,
                       then one a write every 0.1 ms or so, the streams in turn (the server joins
                       a stream's frames that arrive together), until a stream is reset or the
                       windows stay shut for 3 s; prints how many were sent
  tiny-bodies PATH S N S POSTs of PATH, each body N bytes of its own sent as 1-byte DATA frames,
                       every third padded, interleaved over the streams; prints how many bodies
                       came back as sent (matched)
  paced-frames PATH N GAP_MS
                       a POST of PATH whose body is N 1-byte DATA frames, each written alone GAP_MS
                       after the last (each read of the server's brings one), then its end
  extension-flood MB PID
                       MB mebibytes in frames of an extension type (0xfa) of 16 MiB each (the
                       largest length a frame header states), in writes of 64 KiB, then a GET of
                       /public/after on stream 1; prints how much process PID (the gateway) grew
                       meanwhile, the connection still open
  extension-frames N   N empty frames of extension types (PRIORITY_UPDATE, 0xfa) on the connection,
                       then a GET of /public/after on stream 3; prints how many were sent and the
                       answers
  unread PATH SECONDS [STREAMS]
                       STREAMS (1) GETs of PATH from a client whose SETTINGS_INITIAL_WINDOW_SIZE
                       is 0 (it takes no DATA), waiting SECONDS for a stream to be reset; prints
                       the seconds waited
  stalled-body PATH SECONDS [NAME=VALUE ...]
                       a POST of PATH (with the extra fields) whose HEADERS do not end the stream, one DATA frame of "x",
                       then nothing; waits SECONDS for the stream to end or be reset, prints the
                       seconds waited, then a GET of PATH on stream 3 (whether the connection
                       lives on)
  window-later PATH SECONDS
                       a GET of PATH from a client whose SETTINGS_INITIAL_WINDOW_SIZE is 0; after
                       SECONDS it opens the stream's and the connection's windows by 1 MiB and
                       reads the response; prints it with the DATA frames counted
  one-byte-body PATH N a POST of PATH whose body is N 1-byte DATA frames, sent in one write, then
                       an empty DATA frame ending it; prints the response
  hold-small PATH N    N GETs of PATH from a client whose SETTINGS_INITIAL_WINDOW_SIZE is 0 (their
                       bodies never taken), then, after 1 s, a GET of PATH on a second connection;
                       prints both
  request PATH [NAME=VALUE ...]
                       one GET of PATH with the extra fields; prints status, body and trailers
                       (after a GOAWAY, too)
"""
import json
import socket
import struct
import sys
import time

import hpack
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame,
                              PingFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Peer:
    def __init__(self, port, settings=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.table_sizes = []
        self.buffer = b""
        self.goaway = None
        self.goaways = []
        self.resets = {}
        self.headers = {}
        self.bodies = {}
        self.data_frames = {}
        self.ended = set()
        self.closed = False
        self.settings = {}
        # WINDOW_UPDATE credit the server gave, per stream and on the connection.
        self.credit = {}
        # With a chunk size, windows are updated per that many bytes consumed, not per DATA frame.
        self.reader_chunk = None
        # Each DATA frame is answered by a WINDOW_UPDATE of 1 on its stream, and nothing else.
        self.dribble = False
        self.unacknowledged = {}
        self.updates_sent = 0
        self.sock.sendall(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())

    def send(self, *frames):
        return self.send_bytes(b"".join(f.serialize() for f in frames))

    def send_bytes(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            self.closed = True
            return False

    def window(self, stream, sent):
        """What may still be sent on `stream` after `sent` bytes of DATA (all of them on it)."""
        initial = int(self.settings.get("4", 65535))
        return min(initial + self.credit.get(stream, 0), 65535 + self.credit.get(0, 0)) - sent

    def request_block(self, path="/", extra=(), authority="gw.test", method="GET"):
        fields = [(":method", method), (":scheme", "http"), (":path", path), (":authority", authority)]
        return self.encoder.encode(fields + list(extra))

    def pump(self, timeout):
        """Reads frames until `timeout` passes or the connection closes."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return
            except OSError:
                self.closed = True
                return
            if not data:
                self.closed = True
                return
            self.buffer += data
            self._parse()

    def _parse(self):
        while len(self.buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
            if len(self.buffer) < 9 + length:
                return
            frame.parse_body(memoryview(self.buffer[9:9 + length]))
            self.buffer = self.buffer[9 + length:]
            self._handle(frame)

    def _handle(self, frame):
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            self.settings.update({str(k): v for k, v in frame.settings.items()})
            self.send(SettingsFrame(0, flags=["ACK"]))
        elif isinstance(frame, PingFrame) and "ACK" not in frame.flags:
            self.send(PingFrame(0, opaque_data=frame.opaque_data, flags=["ACK"]))
        elif isinstance(frame, GoAwayFrame):
            self.goaway = frame.error_code
            self.goaways.append([frame.last_stream_id, frame.error_code, frame.additional_data.decode("utf-8", "replace")])
        elif isinstance(frame, WindowUpdateFrame):
            self.credit[frame.stream_id] = self.credit.get(frame.stream_id, 0) + frame.window_increment
        elif isinstance(frame, RstStreamFrame):
            self.resets[frame.stream_id] = frame.error_code
        elif isinstance(frame, HeadersFrame):
            self.headers.setdefault(frame.stream_id, []).append(dict(
                (k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v)
                for k, v in self.decoder.decode(frame.data)))
            self.table_sizes.append(self.decoder.header_table_size)
            if "END_STREAM" in frame.flags:
                self.ended.add(frame.stream_id)
        elif isinstance(frame, DataFrame):
            self.bodies[frame.stream_id] = self.bodies.get(frame.stream_id, b"") + frame.data
            self.data_frames[frame.stream_id] = self.data_frames.get(frame.stream_id, 0) + 1
            if frame.flow_controlled_length and self.dribble:
                self.send(WindowUpdateFrame(frame.stream_id, window_increment=1))
            elif frame.flow_controlled_length and self.reader_chunk:
                pending = self.unacknowledged.get(frame.stream_id, 0) + frame.flow_controlled_length
                updates = []
                while pending >= self.reader_chunk:
                    pending -= self.reader_chunk
                    updates += [WindowUpdateFrame(0, window_increment=self.reader_chunk),
                                WindowUpdateFrame(frame.stream_id, window_increment=self.reader_chunk)]
                self.unacknowledged[frame.stream_id] = pending
                self.updates_sent += len(updates)
                self.send(*updates)
            elif frame.flow_controlled_length:
                updates = [WindowUpdateFrame(0, window_increment=frame.flow_controlled_length)]
                if "END_STREAM" not in frame.flags:
                    updates.append(WindowUpdateFrame(frame.stream_id, window_increment=frame.flow_controlled_length))
                self.send(*updates)
            if "END_STREAM" in frame.flags:
                self.ended.add(frame.stream_id)

    def result(self, **extra):
        status = {str(s): h[0].get(":status") for s, h in self.headers.items()}
        heads = {str(s): h[0] for s, h in self.headers.items()}
        trailers = {str(s): h[-1] for s, h in self.headers.items() if len(h) > 1}
        out = {"goaway": self.goaway, "goaways": self.goaways, "closed": self.closed, "resets": {str(k): v for k, v in self.resets.items()},
               "status": status, "heads": heads, "trailers": trailers, "settings": self.settings,
               "bodies": {str(k): v.decode("utf-8", "replace") for k, v in self.bodies.items()},
               "data_frames": {str(k): v for k, v in self.data_frames.items()}}
        out.update(extra)
        return out


def held_streams(port, path, conns, streams, settle=0.02):
    """`conns` connections announcing SETTINGS_INITIAL_WINDOW_SIZE 0 (they take no DATA), each
    sending `streams` GETs of `path`: what they are answered waits in the server."""
    peers = []
    for _ in range(conns):
        peer = Peer(port, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0})
        peer.pump(settle)
        for i in range(streams):
            peer.send(HeadersFrame(1 + 2 * i, peer.request_block(path=path), flags=["END_HEADERS", "END_STREAM"]))
        peers.append(peer)
    return peers


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    arg = sys.argv[3] if len(sys.argv) > 3 else None
    shut = {SettingsFrame.INITIAL_WINDOW_SIZE: 0}
    settings = {"table-size": {SettingsFrame.HEADER_TABLE_SIZE: 2**32 - 1}, "unread": shut, "window-later": shut, "hold-small": shut,
                "chunked-reader": {SettingsFrame.INITIAL_WINDOW_SIZE: 4 << 20, SettingsFrame.ENABLE_PUSH: 0},
                "dribble": {SettingsFrame.INITIAL_WINDOW_SIZE: 1}}
    peer = Peer(port, settings=settings.get(mode))
    if mode == "table-size":
        peer.decoder.max_allowed_table_size = 2**32 - 1
    peer.pump(0.2)
    if mode == "rapid-reset":
        sent = 0
        for i in range(int(arg)):
            stream = 1 + 2 * i
            if not peer.send(HeadersFrame(stream, peer.request_block(), flags=["END_HEADERS", "END_STREAM"]),
                             RstStreamFrame(stream, error_code=8)):
                break
            sent += 1
            if i % 50 == 0:
                peer.pump(0.001)
            if peer.goaway is not None:
                break
        peer.pump(2)
        print(json.dumps(peer.result(sent=sent)))
    elif mode == "reset-after-response":
        peer.send(HeadersFrame(1, peer.request_block(path="/public/delay/8000"), flags=["END_HEADERS", "END_STREAM"]))
        # Each request waits for the last answer: no write waits on Nagle's algorithm.
        peer.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        answered, reset = 0, []
        for i in range(int(arg)):
            stream = 3 + 2 * i
            if not peer.send(*reset, HeadersFrame(stream, peer.request_block(path="/public/%d" % i), flags=["END_HEADERS", "END_STREAM"])):
                break
            deadline = time.monotonic() + 5
            while stream not in peer.ended and stream not in peer.resets and not peer.closed and time.monotonic() < deadline:
                peer.pump(0.002)
            answered += stream in peer.ended
            reset = [RstStreamFrame(stream, error_code=8)]
            if peer.goaway is not None:
                break
        peer.send(*reset)
        deadline = time.monotonic() + 12
        while 1 not in peer.ended and not peer.closed and time.monotonic() < deadline:
            peer.pump(0.1)
        out = peer.result(answered=answered)
        out.pop("bodies")
        out.pop("heads")
        out.pop("status")
        out["first"] = peer.headers.get(1, [{}])[0].get(":status")
        print(json.dumps(out))
    elif mode == "continuation":
        block = peer.request_block(extra=[("x-pad-%d" % i, "v") for i in range(int(arg))])
        pieces = [block[i:i + 8] for i in range(0, len(block), 8)]
        frames = [HeadersFrame(1, pieces[0], flags=["END_STREAM"])]
        frames += [ContinuationFrame(1, p) for p in pieces[1:-1]]
        frames.append(ContinuationFrame(1, pieces[-1], flags=["END_HEADERS"]))
        sent = 0
        for frame in frames:
            if not peer.send(frame):
                break
            sent += 1
        peer.pump(2)
        print(json.dumps(peer.result(sent=sent, frames=len(frames))))
    elif mode in ("ping-flood", "settings-flood"):
        sent = 0
        for i in range(int(arg)):
            frame = PingFrame(0, opaque_data=i.to_bytes(8, "big")) if mode == "ping-flood" else SettingsFrame(0)
            if not peer.send(frame):
                break
            sent += 1
            if i % 50 == 0:
                peer.pump(0.001)
        peer.pump(2)
        print(json.dumps(peer.result(sent=sent)))
    elif mode == "streams":
        for i in range(int(arg)):
            peer.send(HeadersFrame(1 + 2 * i, peer.request_block(path="/delay/1000"), flags=["END_HEADERS", "END_STREAM"]))
        peer.pump(2.5)
        print(json.dumps(peer.result()))
    elif mode == "abandon":
        peer.sock.close()
        for _ in range(int(arg)):
            leaver = Peer(port)
            leaver.pump(0.1)
            for i in range(90):
                leaver.send(HeadersFrame(1 + 2 * i, leaver.request_block(path="/slow"), flags=["END_HEADERS", "END_STREAM"]))
            leaver.pump(0.3)
            leaver.sock.close()
        print(json.dumps({"connections": int(arg)}))
    elif mode == "authority":
        peer.send(HeadersFrame(1, peer.request_block(authority="a.test", extra=[("host", arg)]), flags=["END_HEADERS", "END_STREAM"]))
        peer.pump(2)
        print(json.dumps(peer.result()))
    elif mode == "cookies":
        peer.send(HeadersFrame(1, peer.request_block(path="/public/echo", extra=[("cookie", "a=1"), ("cookie", "b=2")]),
                               flags=["END_HEADERS", "END_STREAM"]))
        while 1 not in peer.ended and not peer.closed:
            peer.pump(0.5)
        print(json.dumps(peer.result()))
    elif mode == "empty-data":
        # A HEADERS frame between the empty ones (another request) keeps the server's count of
        # empty DATA frames in a row, a flood defence, below its limit.
        peer.send(HeadersFrame(1, peer.request_block(path=arg, method="POST"), flags=["END_HEADERS"]), DataFrame(1, b""),
                  HeadersFrame(3, peer.request_block(path="/other"), flags=["END_HEADERS", "END_STREAM"]), DataFrame(1, b""),
                  DataFrame(1, b"x", flags=["END_STREAM"]))
        deadline = time.monotonic() + 5
        while not {1, 3} <= peer.ended and 1 not in peer.resets and not peer.closed and time.monotonic() < deadline:
            peer.pump(0.2)
        print(json.dumps(peer.result()))
    elif mode == "malformed-beside":
        peer.send(HeadersFrame(1, peer.request_block(path="/delay/1000"), flags=["END_HEADERS", "END_STREAM"]))
        peer.pump(0.2)
        peer.send(HeadersFrame(3, peer.request_block(path="/public/bad", extra=[("X-Upper", "1")]), flags=["END_HEADERS", "END_STREAM"]))
        deadline = time.monotonic() + 5
        while 1 not in peer.ended and not peer.closed and time.monotonic() < deadline:
            peer.pump(0.2)
        print(json.dumps(peer.result()))
    elif mode == "extended-connect":
        fields = [(":method", "CONNECT"), (":protocol", sys.argv[4]), (":scheme", "http"), (":path", arg),
                  (":authority", "gw.test"), ("sec-websocket-version", "13")]
        fields += [tuple(field.split("=", 1)) for field in sys.argv[5:]]
        peer.send(HeadersFrame(1, peer.encoder.encode(fields), flags=["END_HEADERS"]))
        deadline = time.monotonic() + 5
        while 1 not in peer.ended and 1 not in peer.resets and not peer.closed and time.monotonic() < deadline:
            peer.pump(0.2)
        print(json.dumps(peer.result()))
    elif mode == "request-ids":
        # ARG requests one after another on one connection; then what HPACK's dynamic table
        # (the decoder's copy of the gateway's encoder table) holds.
        for i in range(int(arg)):
            stream = 1 + 2 * i
            peer.send(HeadersFrame(stream, peer.request_block(path=f"/public/ids/{i}"), flags=["END_HEADERS", "END_STREAM"]))
            deadline = time.monotonic() + 5
            while stream not in peer.ended and not peer.closed and time.monotonic() < deadline:
                peer.pump(0.2)
        table = [[k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v]
                 for k, v in peer.decoder.header_table.dynamic_entries]
        ids = [h[0].get("x-request-id") for _, h in sorted(peer.headers.items())]
        print(json.dumps(peer.result(dynamic_table=table, request_ids=ids)))
    elif mode == "raw":
        fields = [tuple(field) for field in json.loads(arg)]
        body = sys.argv[4].encode() if len(sys.argv) > 4 else None
        block = peer.encoder.encode(fields)
        if body is None:
            peer.send(HeadersFrame(1, block, flags=["END_HEADERS", "END_STREAM"]))
        else:
            peer.send(HeadersFrame(1, block, flags=["END_HEADERS"]), DataFrame(1, body, flags=["END_STREAM"]))
        deadline = time.monotonic() + 5
        while 1 not in peer.ended and 1 not in peer.resets and not peer.closed and time.monotonic() < deadline:
            peer.pump(0.2)
        peer.send(HeadersFrame(3, peer.request_block(path="/after"), flags=["END_HEADERS", "END_STREAM"]))
        deadline = time.monotonic() + 5
        while 3 not in peer.ended and not peer.closed and time.monotonic() < deadline:
            peer.pump(0.2)
        print(json.dumps(peer.result()))
    elif mode == "window-flood":
        peer.send(HeadersFrame(1, peer.request_block(path="/public/delay/2000"), flags=["END_HEADERS", "END_STREAM"]))
        peer.pump(0.2)
        sent = 0
        for i in range(int(arg)):
            if not peer.send(WindowUpdateFrame(1, window_increment=1)):
                break
            sent += 1
            if i % 50 == 0:
                peer.pump(0.001)
            if peer.closed:
                break
        peer.pump(1)
        print(json.dumps(peer.result(sent=sent)))
    elif mode in ("connection-flood", "closed-stream-flood", "goaway-flood", "extension-frames"):
        if mode == "extension-frames":
            class Extension:
                def __init__(self, kind):
                    self.kind = kind

                def serialize(self):
                    return bytes([0, 0, 0, self.kind, 0, 0, 0, 0, 0])
            flood, every, pause = [Extension(0x10), Extension(0xFA)], 25, 0.001
        elif mode == "goaway-flood":
            # A POST to /public/echo whose body's 1-byte DATA frames are each followed by a GOAWAY
            # (last stream 0, NO_ERROR) that keeps it apart from the next.
            peer.send(HeadersFrame(1, peer.request_block(path="/public/echo", method="POST"), flags=["END_HEADERS"]))
            peer.pump(0.2)
            flood, every, pause = [DataFrame(1, b"x"), GoAwayFrame(0, last_stream_id=0, error_code=0)], 10, 0.001
        elif mode == "closed-stream-flood":
            peer.send(HeadersFrame(1, peer.request_block(path="/public/first"), flags=["END_HEADERS", "END_STREAM"]))
            deadline = time.monotonic() + 5
            while 1 not in peer.ended and not peer.closed and time.monotonic() < deadline:
                peer.pump(0.05)
            # Paced to stay below swift-nio-http2's count of every RST_STREAM (200 in 10 ms).
            flood, every, pause = [RstStreamFrame(1, error_code=8)] + [WindowUpdateFrame(1, window_increment=1)] * 9, 20, 0.005
        else:
            flood, every, pause = [WindowUpdateFrame(0, window_increment=1)], 50, 0.001
        sent = 0
        for i in range(int(arg)):
            if not peer.send(*flood):
                break
            sent += len(flood)
            if i % every == 0:
                peer.pump(pause)
            if peer.closed or peer.goaway is not None:
                break
        peer.send(HeadersFrame(3, peer.request_block(path="/public/after"), flags=["END_HEADERS", "END_STREAM"]))
        deadline = time.monotonic() + 5
        while 3 not in peer.ended and not peer.closed and time.monotonic() < deadline:
            peer.pump(0.1)
        print(json.dumps(peer.result(sent=sent)))
    elif mode == "early-answered":
        # N POSTs to PATH, ten at a time, each answered (and reset) by the gateway before its body
        # comes; then, 0.3 s on, a byte of body for each in one write (as a client's uploads in
        # flight arrive), then a GET of /public/after.
        count = int(sys.argv[4])
        streams = [1 + 2 * i for i in range(count)]
        for batch in range(0, count, 10):
            peer.send(*[HeadersFrame(s, peer.request_block(path=arg, method="POST"), flags=["END_HEADERS"]) for s in streams[batch:batch + 10]])
            deadline = time.monotonic() + 5
            while not all(s in peer.headers for s in streams[batch:batch + 10]) and not peer.closed and time.monotonic() < deadline:
                peer.pump(0.05)
        peer.pump(0.3)
        peer.send(*[DataFrame(s, b"x") for s in streams])
        after = streams[-1] + 2
        peer.send(HeadersFrame(after, peer.request_block(path="/public/after"), flags=["END_HEADERS", "END_STREAM"]))
        deadline = time.monotonic() + 5
        while after not in peer.ended and not peer.closed and time.monotonic() < deadline:
            peer.pump(0.1)
        print(json.dumps(peer.result(after=after)))
    elif mode == "dribble":
        peer.dribble = True
        peer.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer.send(WindowUpdateFrame(0, window_increment=1 << 30),
                  HeadersFrame(1, peer.request_block(path=arg), flags=["END_HEADERS", "END_STREAM"]),
                  *[WindowUpdateFrame(1, window_increment=1)] * 3)
        deadline = time.monotonic() + 20
        while peer.data_frames.get(1, 0) < int(sys.argv[4]) and 1 not in peer.ended and not peer.closed \
                and peer.goaway is None and time.monotonic() < deadline:
            peer.pump(0.05)
        out = peer.result(frames=peer.data_frames.get(1, 0))
        out.pop("bodies")
        print(json.dumps(out))
    elif mode == "chunked-reader":
        peer.reader_chunk = int(sys.argv[4])
        peer.send(WindowUpdateFrame(0, window_increment=1 << 30),
                  HeadersFrame(1, peer.request_block(path=arg), flags=["END_HEADERS", "END_STREAM"]))
        deadline = time.monotonic() + 20
        while 1 not in peer.ended and not peer.closed and time.monotonic() < deadline:
            peer.pump(0.1)
        peer.pump(0.3)
        peer.send(HeadersFrame(3, peer.request_block(path="/public/after"), flags=["END_HEADERS", "END_STREAM"]))
        deadline = time.monotonic() + 5
        while 3 not in peer.ended and not peer.closed and time.monotonic() < deadline:
            peer.pump(0.1)
        out = peer.result(updates=peer.updates_sent, received=len(peer.bodies.get(1, b"")), frames=peer.data_frames.get(1, 0))
        out.pop("bodies")
        print(json.dumps(out))
    elif mode == "table-size":
        for i in range(20):
            stream = 1 + 2 * i
            peer.send(HeadersFrame(stream, peer.request_block(path=f"/public/table/{i}"), flags=["END_HEADERS", "END_STREAM"]))
            deadline = time.monotonic() + 5
            while stream not in peer.ended and not peer.closed and time.monotonic() < deadline:
                peer.pump(0.2)
        print(json.dumps(peer.result(largest_table_size=max(peer.table_sizes, default=None), responses=len(peer.headers))))
    elif mode == "small-frames":
        count = int(sys.argv[6]) if len(sys.argv) > 6 else 1
        streams = [1 + 2 * i for i in range(count)]
        peer.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer.send(*[HeadersFrame(s, peer.request_block(path=arg, method="POST"), flags=["END_HEADERS"]) for s in streams])
        peer.pump(0.2)
        # The first BULK frames of each stream in writes of 4 096, then one frame a write, the
        # streams in turn, paced: the gateway joins a stream's small DATA frames that arrive
        # together in one read, so frames that reach its queues one by one must come one read
        # each (an attacker's write each), or one stream each in a read.
        one = {s: DataFrame(s, data=b"x").serialize() for s in streams}
        limit, bulk = int(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else 0
        sent = {s: 0 for s in streams}
        idle, turn = time.monotonic(), 0
        connection = lambda: 65535 + peer.credit.get(0, 0) - sum(sent.values())
        while sum(sent.values()) < limit and not peer.resets and not peer.closed:
            s = streams[turn % count]
            turn += 1
            window = int(peer.settings.get("4", 65535)) + peer.credit.get(s, 0) - sent[s]
            n = min(window, connection(), 4096 if sent[s] < bulk else 1, limit - sum(sent.values()))
            if n > 0:
                if not peer.send_bytes(one[s] * n):
                    break
                sent[s] += n
                idle = time.monotonic()
                if sent[s] > bulk:
                    time.sleep(0.0001)
                if n > 1 or turn % 256 == 0:
                    peer.pump(0.001)
            elif time.monotonic() - idle > 3:
                break
            elif turn % count == 0:
                peer.pump(0.05)
        peer.pump(1)
        print(json.dumps(peer.result(sent=sum(sent.values()), sent_per_stream={str(s): n for s, n in sent.items()})))
    elif mode == "tiny-bodies":
        # STREAMS POSTs to PATH, each body BYTES long and its own (byte i of stream s is
        # (7s + i) mod 251), sent as 1-byte DATA frames, every third padded with 2 bytes (4 bytes
        # of flow control), interleaved over the streams in writes of up to 64 rounds, as the
        # windows allow. Prints, besides the result, how many bodies came back as sent.
        count, size = int(sys.argv[4]), int(sys.argv[5])
        streams = [1 + 2 * i for i in range(count)]
        bodies = {s: bytes((7 * s + i) % 251 for i in range(size)) for s in streams}
        peer.send(*[HeadersFrame(s, peer.request_block(path=arg, method="POST"), flags=["END_HEADERS"]) for s in streams])
        peer.pump(0.2)
        position = {s: 0 for s in streams}
        flow = {s: 0 for s in streams}
        idle = time.monotonic()

        def tiny(stream, i):
            flags = 0x1 if i == size - 1 else 0
            payload = bodies[stream][i:i + 1]
            if i % 3 == 0:
                flags |= 0x8
                payload = b"\x02" + payload + b"\x00\x00"
            return struct.pack(">I", len(payload))[1:] + bytes([0, flags]) + struct.pack(">I", stream) + payload

        while any(position[s] < size for s in streams) and not peer.closed and time.monotonic() - idle < 5:
            initial = int(peer.settings.get("4", 65535))
            connection = 65535 + peer.credit.get(0, 0) - sum(flow.values())
            out = []
            for _ in range(64):
                for s in streams:
                    i = position[s]
                    if i >= size or s in peer.resets:
                        continue
                    length = 4 if i % 3 == 0 else 1
                    if initial + peer.credit.get(s, 0) - flow[s] < length or connection < length:
                        continue
                    out.append(tiny(s, i))
                    position[s] += 1
                    flow[s] += length
                    connection -= length
            if out:
                if not peer.send_bytes(b"".join(out)):
                    break
                idle = time.monotonic()
                peer.pump(0.001)
            else:
                peer.pump(0.05)
        deadline = time.monotonic() + 20
        while not set(streams) <= peer.ended and not peer.closed and not peer.resets and time.monotonic() < deadline:
            peer.pump(0.2)
        matched = sum(1 for s in streams if peer.bodies.get(s) == bodies[s])
        result = peer.result(matched=matched, sent={str(s): position[s] for s in streams},
                             received={str(s): len(peer.bodies.get(s, b"")) for s in streams})
        result["bodies"] = {}
        print(json.dumps(result))
    elif mode == "extension-flood":
        def resident():
            with open(f"/proc/{sys.argv[4]}/status") as status:
                return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))
        before = resident()
        size = (1 << 24) - 1
        header = size.to_bytes(3, "big") + bytes([0xFA, 0]) + (0).to_bytes(4, "big")
        piece = b"u" * 65536
        sent = 0
        while sent < int(arg) << 20 and not peer.closed:
            peer.send_bytes(header)
            left = size
            while left > 0 and not peer.closed:
                peer.send_bytes(piece[:min(left, len(piece))])
                left -= min(left, len(piece))
                peer.pump(0)
            sent += size + 9
        peer.send(HeadersFrame(1, peer.request_block(path="/public/after"), flags=["END_HEADERS", "END_STREAM"]))
        deadline = time.monotonic() + 10
        while 1 not in peer.ended and not peer.closed and time.monotonic() < deadline:
            peer.pump(0.2)
        print(json.dumps(peer.result(sent_mb=sent >> 20, grew=resident() - before)))
    elif mode == "unread":
        count = int(sys.argv[5]) if len(sys.argv) > 5 else 1
        peer.send(*[HeadersFrame(1 + 2 * i, peer.request_block(path=arg), flags=["END_HEADERS", "END_STREAM"]) for i in range(count)])
        start = time.monotonic()
        while not peer.resets and not peer.closed and time.monotonic() < start + float(sys.argv[4]):
            peer.pump(0.05)
        print(json.dumps(peer.result(waited=time.monotonic() - start)))
    elif mode == "stalled-body":
        extra = [tuple(field.split("=", 1)) for field in sys.argv[5:]]
        peer.send(HeadersFrame(1, peer.request_block(path=arg, method="POST", extra=extra), flags=["END_HEADERS"]), DataFrame(1, b"x"))
        start = time.monotonic()
        while 1 not in peer.ended and 1 not in peer.resets and not peer.closed and time.monotonic() < start + float(sys.argv[4]):
            peer.pump(0.05)
        waited = time.monotonic() - start
        peer.send(HeadersFrame(3, peer.request_block(path=arg), flags=["END_HEADERS", "END_STREAM"]))
        deadline = time.monotonic() + 5
        while 3 not in peer.ended and not peer.closed and time.monotonic() < deadline:
            peer.pump(0.2)
        print(json.dumps(peer.result(waited=waited)))
    elif mode == "window-later":
        peer.send(HeadersFrame(1, peer.request_block(path=arg), flags=["END_HEADERS", "END_STREAM"]))
        peer.pump(float(sys.argv[4]))
        peer.send(WindowUpdateFrame(1, window_increment=1 << 20), WindowUpdateFrame(0, window_increment=1 << 20))
        deadline = time.monotonic() + 10
        while 1 not in peer.ended and 1 not in peer.resets and not peer.closed and time.monotonic() < deadline:
            peer.pump(0.2)
        print(json.dumps(peer.result(body_bytes=len(peer.bodies.get(1, b"")))))
    elif mode == "one-byte-body":
        frames = [HeadersFrame(1, peer.request_block(path=arg, method="POST"), flags=["END_HEADERS"])]
        frames += [DataFrame(1, b"x") for _ in range(int(sys.argv[4]))] + [DataFrame(1, b"", flags=["END_STREAM"])]
        peer.send(*frames)
        deadline = time.monotonic() + 10
        while 1 not in peer.ended and 1 not in peer.resets and not peer.closed and time.monotonic() < deadline:
            peer.pump(0.2)
        print(json.dumps(peer.result()))
    elif mode == "paced-frames":
        # N 1-byte DATA frames, one per write GAP_MS apart (so that each read brings one), then the end.
        count, gap = int(sys.argv[4]), float(sys.argv[5]) / 1000
        peer.send(HeadersFrame(1, peer.request_block(path=arg, method="POST"), flags=["END_HEADERS"]))
        for _ in range(count):
            peer.send(DataFrame(1, b"x"))
            time.sleep(gap)
        peer.send(DataFrame(1, b"", flags=["END_STREAM"]))
        deadline = time.monotonic() + 15
        while 1 not in peer.ended and 1 not in peer.resets and not peer.closed and time.monotonic() < deadline:
            peer.pump(0.2)
        print(json.dumps(peer.result()))
    elif mode == "hold-small":
        for i in range(int(sys.argv[4])):
            peer.send(HeadersFrame(1 + 2 * i, peer.request_block(path=arg), flags=["END_HEADERS", "END_STREAM"]))
        peer.pump(1)
        try:
            second = Peer(port)
            second.pump(0.1)
            second.send(HeadersFrame(1, second.request_block(path=arg), flags=["END_HEADERS", "END_STREAM"]))
            deadline = time.monotonic() + 5
            while 1 not in second.ended and not second.closed and time.monotonic() < deadline:
                second.pump(0.2)
            seen = second.result()
        except OSError as error:
            seen = {"closed": True, "error": str(error)}
        print(json.dumps(peer.result(second=seen)))
    elif mode == "request":
        extra = [tuple(field.split("=", 1)) for field in sys.argv[4:]]
        peer.send(HeadersFrame(1, peer.request_block(path=arg, extra=extra), flags=["END_HEADERS", "END_STREAM"]))
        deadline = time.monotonic() + 10
        while 1 not in peer.ended and not peer.closed and time.monotonic() < deadline:
            peer.pump(0.2)
        peer.pump(0.3)
        print(json.dumps(peer.result()))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
