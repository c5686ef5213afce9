#!/usr/bin/env python3
"""A TCP relay that delays every byte by a fixed one-way latency (plus jitter), both ways.

The multi-host test bed (cluster/hosts.sh) puts one in front of every listening socket a host
offers to other hosts, because this machine's kernel has no `sch_netem` (`tc qdisc add … netem`
fails with "Specified qdisc kind is unknown"), so latency cannot be added on the links
themselves. A server binds 127.0.0.1 inside its namespace; the relay binds the host's bridge
address and forwards, so every connection to the host crosses the delay: a request waits
`delay` on the way in and its answer `delay` on the way out, which is one round trip of
2 × delay, as netem on each host's egress would give.

Order is kept (a chunk never overtakes an earlier one: its deadline is at least the previous
chunk's), as netem does without its reorder option. Bytes, not packets, are delayed, so TLS and
every protocol pass unchanged. What it cannot emulate: packet loss (TCP would hide it as
retransmission delay anyway) and per-packet jitter within one read.

  delay-relay.py LISTEN_HOST:PORT TARGET_HOST:PORT [--delay-ms 1] [--jitter-ms 0.2]

Two threads per direction and connection: a reader that stamps each chunk with its deadline and
a writer that sleeps until it (time.sleep is nanosleep, ~60 µs late at most on an idle core).
"""
import argparse
import collections
import random
import socket
import sys
import threading
import time


def parse(address):
    host, _, port = address.rpartition(":")
    return host, int(port)


class Direction:
    """One direction of one connection: src → (delay) → dst."""

    def __init__(self, src, dst, delay, jitter, on_close, on_done):
        self.src, self.dst = src, dst
        self.on_done = on_done
        self.delay, self.jitter = delay, jitter
        self.queue = collections.deque()
        self.ready = threading.Condition()
        self.last_deadline = 0.0
        self.on_close = on_close

    def start(self):
        threading.Thread(target=self.read, daemon=True).start()
        threading.Thread(target=self.write, daemon=True).start()

    def read(self):
        try:
            while True:
                data = self.src.recv(65536)
                now = time.monotonic()
                deadline = max(self.last_deadline, now + self.delay + random.uniform(-self.jitter, self.jitter))
                self.last_deadline = deadline
                with self.ready:
                    self.queue.append((deadline, data))
                    self.ready.notify()
                if not data:
                    return
        except OSError:
            with self.ready:
                self.queue.append((0.0, None))
                self.ready.notify()

    def write(self):
        try:
            while True:
                with self.ready:
                    while not self.queue:
                        self.ready.wait()
                    deadline, data = self.queue.popleft()
                if data is None:  # the source failed: reset both sides
                    self.on_close()
                    return
                wait = deadline - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if not data:  # orderly end: pass the half-close on
                    try:
                        self.dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    self.on_done()
                    return
                self.dst.sendall(data)
        except OSError:
            self.on_close()


def serve(listen, target, delay, jitter):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(listen)
    server.listen(512)
    while True:
        client, _ = server.accept()
        try:
            upstream = socket.create_connection(target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            continue
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        closed = threading.Event()

        def close(client=client, upstream=upstream, closed=closed):
            if closed.is_set():
                return
            closed.set()
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

        ended = []
        lock = threading.Lock()

        def done(ended=ended, lock=lock, close=close):
            # Both directions ended in order: nothing more can flow, free the sockets.
            with lock:
                ended.append(True)
                if len(ended) == 2:
                    close()

        Direction(client, upstream, delay, jitter, close, done).start()
        Direction(upstream, client, delay, jitter, close, done).start()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("listen")
    parser.add_argument("target")
    parser.add_argument("--delay-ms", type=float, default=1.0)
    parser.add_argument("--jitter-ms", type=float, default=0.2)
    args = parser.parse_args()
    if args.jitter_ms > args.delay_ms:
        sys.exit("delay-relay: the jitter may not exceed the delay")
    serve(parse(args.listen), parse(args.target), args.delay_ms / 1000, args.jitter_ms / 1000)


if __name__ == "__main__":
    main()
