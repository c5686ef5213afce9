#!/usr/bin/env python3
"""An HTTP/2 client (prior-knowledge h2c) that downloads on several streams and reads its socket
at a steady pace (ClientProgressTests), or keeps one stream's window shut.

    h2_paced_reader.py PORT PATH STREAMS BYTES_PER_SECOND SECONDS [shut-first]

Opens STREAMS streams, each a GET of PATH, with windows as a browser's are (16 MiB a stream, 64 MiB
on the connection), and for SECONDS reads BYTES_PER_SECOND a second from its socket in reads of at
most 16 KiB every 50 ms (0: reads nothing), giving back what it reads of each stream's window.
With `shut-first` the first stream's window is never given back (it stays at 64 KiB, the
SETTINGS value, while the others are raised to 16 MiB). Prints one JSON object: "received" (DATA
bytes per stream, in order), "resets" (streams it saw reset, with their error code) and "ended"
(streams that ended).
"""
import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings

STREAM_WINDOW = 16 << 20
CONNECTION_WINDOW = 64 << 20


def main():
    port, path, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    rate, seconds = int(sys.argv[4]), float(sys.argv[5])
    shut_first = len(sys.argv) > 6 and sys.argv[6] == "shut-first"
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    if not shut_first:
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW})
    conn.increment_flow_control_window(CONNECTION_WINDOW)
    streams = []
    for _ in range(count):
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, [(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1"), (":path", path)],
                          end_stream=True)
        streams.append(stream)
    if shut_first:
        for stream in streams[1:]:
            conn.increment_flow_control_window(STREAM_WINDOW - 65535, stream_id=stream)
    sock.sendall(conn.data_to_send())
    received = {stream: 0 for stream in streams}
    resets, ended = {}, []
    start = time.monotonic()
    read = 0
    while time.monotonic() - start < seconds:
        time.sleep(0.05)
        if rate == 0:
            continue
        want = min(16384, int(rate * (time.monotonic() - start)) - read)
        if want <= 0:
            continue
        sock.settimeout(0.05)
        try:
            data = sock.recv(want)
        except socket.timeout:
            continue
        except OSError:
            break
        if not data:
            break
        read += len(data)
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                received[event.stream_id] = received.get(event.stream_id, 0) + len(event.data)
                # The connection's window is always given back; a shut stream's is not.
                if shut_first and event.stream_id == streams[0]:
                    conn.increment_flow_control_window(event.flow_controlled_length)
                else:
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                resets[event.stream_id] = int(event.error_code)
            elif isinstance(event, h2.events.StreamEnded):
                ended.append(event.stream_id)
        outgoing = conn.data_to_send()
        if outgoing:
            sock.sendall(outgoing)
    print(json.dumps({"received": [received[s] for s in streams], "resets": {str(k): v for k, v in resets.items()},
                      "ended": ended}), flush=True)
    sock.close()


if __name__ == "__main__":
    main()
