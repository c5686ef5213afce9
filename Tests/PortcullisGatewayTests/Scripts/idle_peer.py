#!/usr/bin/env python3
"""HTTP/2 clients that leave a connection idle, for the gateway's idle-connection tests.

    idle_peer.py MODE PORT SECONDS

Modes:
  preface    sends the connection preface and SETTINGS, then nothing
  no-ping    one GET of /ok, then nothing; it never answers a PING (the server's graceful close
             of an idle connection waits for that answer)
  held       one GET of /big-data from a client whose SETTINGS_INITIAL_WINDOW_SIZE is 0: the
             stream stays open, its response waiting
Waits up to SECONDS for the server to close the connection; prints {"closed_after": seconds or
null, "goaway": the error code of the last GOAWAY or null}.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from h2_peer import Peer  # noqa: E402
from hyperframe.frame import HeadersFrame, PingFrame, SettingsFrame  # noqa: E402


class SilentPeer(Peer):
    """Never answers a PING."""

    def _handle(self, frame):
        if isinstance(frame, PingFrame):
            return
        super()._handle(frame)


def main():
    mode, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    if mode == "held":
        peer = Peer(port, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0})
    else:
        peer = SilentPeer(port)
    start = time.monotonic()
    if mode in ("no-ping", "held"):
        path = "/ok" if mode == "no-ping" else "/big-data"
        peer.send(HeadersFrame(1, peer.request_block(path=path), flags=["END_HEADERS", "END_STREAM"]))
    while not peer.closed and time.monotonic() - start < seconds:
        peer.pump(0.1)
    closed = round(time.monotonic() - start, 2) if peer.closed else None
    print(json.dumps({"closed_after": closed, "goaway": peer.goaway}))


if __name__ == "__main__":
    main()
