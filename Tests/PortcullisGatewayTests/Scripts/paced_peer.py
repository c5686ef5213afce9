#!/usr/bin/env python3
"""Paced small writes through the gateway, with both peers in this process: an upstream that stops
reading (or a client that does), and a peer sending 1-byte pieces toward it one at a time. Run
inside a network namespace whose socket buffers are small, so that what the stopped side does not
take waits in the gateway rather than in the kernel.

    paced_peer.py MODE GATEWAY_PORT UPSTREAM_PORT [ARG ...]

Prints one JSON object. Modes:
  body N GAP_MS STALL_S      a chunked POST of /paced whose body is N 1-byte chunks, GAP_MS apart;
                             the upstream reads the head, then nothing for STALL_S, then the body:
                             prints how many chunks the upstream's body came in
  h2-body STREAMS N GAP_MS STALL_S
                             the same over HTTP/2 (prior knowledge): STREAMS POSTs of /paced, each
                             body N 1-byte DATA frames, one frame per stream every GAP_MS; prints
                             the chunk count of each body as the upstream read it
  response N STALL_S         a GET of /many/N, answered with N 1-byte chunks; the client reads
                             nothing for STALL_S, then everything: prints how many chunks came
  unread N SECS              a GET of /many/N by a client that never reads; prints after how many
                             seconds the gateway closed the upstream connection (null: not in SECS)
  ws N GAP_MS STALL_S PID    a WebSocket to /ws whose client sends one binary frame of N bytes, one
                             byte every GAP_MS after the header; the upstream answers the
                             handshake, then reads nothing for STALL_S, then everything: prints
                             how much process PID (the gateway) grew while the bytes were held,
                             and whether the upstream got every byte
"""
import base64, hashlib, json, socket, sys, threading, time



def rss_kib(pid):
    with open(f'/proc/{pid}/status') as status:
        for line in status:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def connect(port, timeout=10.0):
    """Connects, retrying while the gateway starts."""
    deadline = time.time() + timeout
    while True:
        try:
            sock = socket.create_connection(('127.0.0.1', port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)


def read_head(reader):
    head = b''
    while not head.endswith(b'\r\n\r\n'):
        line = reader.readline()
        if not line:
            return None
        head += line
    return head


def read_chunks(reader):
    """Reads a chunked body: (chunks, bytes, data)."""
    chunks, data = 0, bytearray()
    while True:
        size = int(reader.readline().split(b';')[0], 16)
        if size == 0:
            reader.readline()
            return chunks, len(data), bytes(data)
        data += reader.read(size)
        reader.readline()
        chunks += 1


def listen(port, handler, receive_buffer=None):
    """Serves `handler(connection)` on a thread per connection, from a thread of its own; with
    `receive_buffer` its connections get that SO_RCVBUF."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if receive_buffer:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    server.bind(('127.0.0.1', port))
    server.listen(1024)

    def accept():
        while True:
            conn, _ = server.accept()
            threading.Thread(target=handler, args=(conn,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()


def counting_upstream(stall, counts):
    """Reads a request head, nothing for `stall` s, then the chunked body; answers its chunk count."""
    def handle(conn):
        reader = conn.makefile('rb')
        while True:
            head = read_head(reader)
            if head is None:
                return
            time.sleep(stall)
            chunks, size, _ = read_chunks(reader)
            counts.append(chunks)
            body = json.dumps({'chunks': chunks, 'bytes': size}).encode()
            conn.sendall(b'HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n' % len(body) + body)
    return handle



def main():
    MODE = sys.argv[1]
    GATEWAY, UPSTREAM = int(sys.argv[2]), int(sys.argv[3])
    ARGS = sys.argv[4:]
    result = {}
    if MODE == 'body':
        n, gap, stall = int(ARGS[0]), float(ARGS[1]) / 1000, float(ARGS[2])
        counts = []
        listen(UPSTREAM, counting_upstream(stall, counts))
        client = connect(GATEWAY)
        client.sendall(b'POST /paced HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n')
        for _ in range(n):
            client.sendall(b'1\r\nx\r\n')
            time.sleep(gap)
        client.sendall(b'0\r\n\r\n')
        client.settimeout(stall + 20)
        response = b''
        while b'\r\n\r\n' not in response or not response.rstrip().endswith(b'}'):
            part = client.recv(65536)
            if not part:
                break
            response += part
        result['status'] = int(response.split(b' ')[1]) if response else None
        result['upstream'] = json.loads(response.split(b'\r\n\r\n', 1)[1]) if result['status'] == 200 else None

    elif MODE == 'h2-body':
        import h2.config, h2.connection, h2.events
        streams, n, gap, stall = int(ARGS[0]), int(ARGS[1]), float(ARGS[2]) / 1000, float(ARGS[3])
        counts = []
        listen(UPSTREAM, counting_upstream(stall, counts))
        sock = connect(GATEWAY)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding='utf-8'))
        conn.initiate_connection()
        ids = []
        for _ in range(streams):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, [(':method', 'POST'), (':scheme', 'http'), (':authority', 'a'), (':path', '/paced')])
            ids.append(sid)
        sock.sendall(conn.data_to_send())
        sock.setblocking(False)
        statuses, bodies, ended = {}, {}, set()

        def pump():
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    statuses[event.stream_id] = int(dict(event.headers)[':status'])
                elif isinstance(event, h2.events.DataReceived):
                    bodies[event.stream_id] = bodies.get(event.stream_id, b'') + event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    ended.add(event.stream_id)
            out = conn.data_to_send()
            if out:
                sock.setblocking(True)
                sock.sendall(out)
                sock.setblocking(False)

        for _ in range(n):
            for sid in ids:
                conn.send_data(sid, b'x')
            sock.setblocking(True)
            sock.sendall(conn.data_to_send())
            sock.setblocking(False)
            pump()
            time.sleep(gap)
        for sid in ids:
            conn.end_stream(sid)
        sock.setblocking(True)
        sock.sendall(conn.data_to_send())
        sock.setblocking(False)
        deadline = time.time() + stall + 20
        while len(ended) < len(ids) and time.time() < deadline:
            pump()
            time.sleep(0.01)
        result['statuses'] = sorted(statuses.get(sid) or 0 for sid in ids)
        result['chunks'] = sorted(json.loads(bodies[sid])['chunks'] for sid in ids if sid in bodies and statuses.get(sid) == 200)

    elif MODE in ('response', 'unread'):
        n = int(ARGS[0])
        cut = {}
        sent_at = {}

        def handle(conn):
            reader = conn.makefile('rb')
            head = read_head(reader)
            conn.sendall(b'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n')
            sent_at['start'] = time.time()
            try:
                for i in range(0, n, 1000):
                    conn.sendall(b'1\r\nx\r\n' * min(1000, n - i))
                conn.sendall(b'0\r\n\r\n')
                conn.settimeout(60)
                # The gateway closes the connection if it cuts the exchange; else it stays.
                if conn.recv(1) == b'':
                    cut['after'] = time.time() - sent_at['start']
            except OSError:
                cut['after'] = time.time() - sent_at['start']
        listen(UPSTREAM, handle)
        client = connect(GATEWAY)
        client.sendall(b'GET /many/%d HTTP/1.1\r\nHost: a\r\n\r\n' % n)
        if MODE == 'response':
            time.sleep(float(ARGS[1]))
            client.settimeout(20)
            reader = client.makefile('rb')
            head = read_head(reader)
            result['status'] = int(head.split(b' ')[1])
            result['chunks'], result['bytes'], data = read_chunks(reader)
            result['intact'] = data == b'x' * n
        else:
            secs = float(ARGS[1])
            deadline = time.time() + secs
            while 'after' not in cut and time.time() < deadline:
                time.sleep(0.05)
            result['cut_after'] = round(cut['after'], 2) if 'after' in cut else None

    elif MODE == 'ws':
        n, gap, stall, pid = int(ARGS[0]), float(ARGS[1]) / 1000, float(ARGS[2]), int(ARGS[3])
        got = bytearray()
        done = threading.Event()

        def handle(conn):
            reader = conn.makefile('rb')
            head = read_head(reader)
            key = [l.split(b':', 1)[1].strip() for l in head.split(b'\r\n') if l.lower().startswith(b'sec-websocket-key')][0]
            accept = base64.b64encode(hashlib.sha1(key + b'258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest())
            conn.sendall(b'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
                         b'Sec-WebSocket-Accept: ' + accept + b'\r\n\r\n')
            time.sleep(stall)
            conn.settimeout(20)
            want = 2 + 8 + 4 + n
            while len(got) < want:
                part = conn.recv(65536)
                if not part:
                    break
                got.extend(part)
            done.set()
        listen(UPSTREAM, handle)
        client = connect(GATEWAY)
        client.sendall(b'GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
                       b'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')
        answer = b''
        while b'\r\n\r\n' not in answer:
            answer += client.recv(4096)
        result['status'] = int(answer.split(b' ')[1])
        before = rss_kib(pid)
        # A binary frame with a zero masking key: its payload passes as sent.
        client.sendall(bytes([0x82, 0xFF]) + n.to_bytes(8, 'big') + b'\0\0\0\0')
        started = time.time()
        for _ in range(n):
            client.sendall(b'z')
            time.sleep(gap)
        paced = time.time() - started
        held = rss_kib(pid)
        result['grew_kib'] = held - before
        result['paced_s'] = round(paced, 2)
        result['upstream_read_late'] = paced < stall
        done.wait(stall + 20)
        result['intact'] = bytes(got[14:]) == b'z' * n
    print(json.dumps(result))


if __name__ == '__main__':
    main()
