#!/usr/bin/env python3
"""Opens streams on one HTTP/2 connection (h2c, prior knowledge) to a gateway, one at a time.

    h2_stream_opener.py PORT COUNT PATH_PREFIX [HOLD_SECONDS [GAP_SECONDS]]

Sends COUNT GETs (PATH_PREFIX/0, PATH_PREFIX/1, …) GAP_SECONDS apart (0.03 by default), reading
what the gateway sends meanwhile, prints "sent", then keeps the connection open HOLD_SECONDS
and exits without closing its streams.
"""
import socket
import sys
import time

import h2.config
import h2.connection

port, count, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
hold = float(sys.argv[4]) if len(sys.argv) > 4 else 0
gap = float(sys.argv[5]) if len(sys.argv) > 5 else 0.03
sock = socket.create_connection(("127.0.0.1", port), timeout=5)
conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
conn.initiate_connection()
sock.sendall(conn.data_to_send())
sock.settimeout(gap)
for index in range(count):
    conn.send_headers(2 * index + 1, [(":method", "GET"), (":scheme", "http"), (":authority", "gateway"), (":path", f"{prefix}/{index}")],
                      end_stream=True)
    sock.sendall(conn.data_to_send())
    try:
        data = sock.recv(65536)
        if data:
            conn.receive_data(data)
            sock.sendall(conn.data_to_send())
    except socket.timeout:
        pass
print("sent", flush=True)
time.sleep(hold)
