#!/usr/bin/env python3
"""Where Python's h11 (an HTTP/1.1 implementation independent of llhttp) ends each request.

The reference side of the request-framing differential test
(Tests/PortcullisGatewayTests/RequestFramingDifferentialTests.swift). Reads a JSON array of
hex-encoded byte strings on stdin — each what one client sends on one connection — and prints a
JSON array with, for each, the requests h11 reads as a server (method, target, body as hex) and
how the bytes end:
  complete    every byte belongs to a complete request
  incomplete  h11 waits for more bytes (a request is cut short)
  close       a request asked for the connection to close; h11 reads nothing after it
  error       h11 refuses the bytes (RemoteProtocolError), after the requests listed
"""
import json
import sys

import h11


def frame(data: bytes) -> dict:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    requests, current, end, reason = [], None, "complete", None
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as error:
            end, reason = "error", str(error)
            break
        if event is h11.NEED_DATA:
            pending = current is not None or bool(conn.trailing_data[0])
            end = "incomplete" if pending else "complete"
            break
        if event is h11.PAUSED:
            # h11 holds the next request until this one is answered; answered below.
            end, reason = "error", "paused without a complete request"
            break
        if isinstance(event, h11.Request):
            current = {"method": event.method.decode("latin-1"), "target": event.target.decode("latin-1"), "body": b""}
        elif isinstance(event, h11.Data):
            current["body"] += event.data
        elif isinstance(event, h11.EndOfMessage):
            current["body"] = current["body"].hex()
            requests.append(current)
            current = None
            conn.send(h11.Response(status_code=200, headers=[("Content-Length", "2")]))
            conn.send(h11.Data(data=b"ok"))
            conn.send(h11.EndOfMessage())
            if conn.their_state is h11.MUST_CLOSE or conn.our_state is h11.MUST_CLOSE:
                end = "close"
                break
            conn.start_next_cycle()
        elif isinstance(event, h11.ConnectionClosed):
            break
    return {"requests": requests, "end": end, "reason": reason}


def main() -> None:
    cases = json.load(sys.stdin)
    json.dump([frame(bytes.fromhex(case)) for case in cases], sys.stdout)


if __name__ == "__main__":
    main()
