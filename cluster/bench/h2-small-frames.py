#!/usr/bin/env python3
"""What request bodies of 1-byte HTTP/2 DATA frames cost the gateway (docs/benchmarks.md, "Small
DATA frames joined"): for each build given, alternated for ROUNDS rounds, a gateway on loopback
(one public route, h2c, max_body_bytes 1 GiB) in front of an upstream that reads and drops what
it gets, and one connection of STREAMS POSTs fed 1-byte DATA frames (or --frame-bytes) as fast
as the windows allow for SECONDS. Shapes: `runs` (500 frames of a stream in a row, the streams
in turn, in one write), `interleaved` (50 rounds of one frame per stream in a write) and `spread`
(one frame per stream in a write, --gap-us between writes: nothing to join). Prints
each run, then the medians: frames a second; the gateway's CPU per frame and per byte on the
wire (what it still reads in the second after the sender stops included); its share of a core;
its CPU over the sending thread's. A stream the gateway resets is dropped and the others go on.

    cluster/bench/h2-small-frames.py [--rounds 3] [--seconds 8] [--streams 4] [--shape runs]
                                     [--frame-bytes 1] [--gap-us 1000] BIN...

Needs python3's `h2` package (cluster/setup.sh installs it). Loopback only; every process it
starts ends with it.
"""
import argparse
import asyncio
import os
import select
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def upstream(port, ready):
    """An HTTP/1.1 upstream that reads every request's bytes and answers nothing."""
    async def drop(reader, writer):
        while await reader.read(1 << 16):
            pass
        writer.close()

    async def serve():
        server = await asyncio.start_server(drop, "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()
    asyncio.run(serve())


def attack(port, gateway_pid, streams, seconds, shape, frame_bytes, gap):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    encoder = hpack.Encoder()
    sock.sendall(PREFACE + frame(4, 0, 0))
    ids = [1 + 2 * i for i in range(streams)]
    sock.sendall(b"".join(frame(1, 0x4, s, encoder.encode([(":method", "POST"), (":scheme", "http"), (":authority", "bench"),
                                                             (":path", "/up")])) for s in ids))
    window = {s: 65535 for s in ids}
    connection = 65535
    one = {s: frame(0, 0, s, b"x" * frame_bytes) for s in ids}
    # Bytes of a stream per write: 500 frames of a byte, or two larger frames.
    if shape == "runs":
        count = 500 if frame_bytes == 1 else 2
        per, write = count * frame_bytes, {s: one[s] * count for s in ids}
    else:
        # `spread`: one frame per stream a write, a pause between writes.
        rounds = 50 if shape == "interleaved" else 1
        per, block = rounds * frame_bytes, b"".join(one[s] for s in ids) * rounds
    buffered = b""
    # The sending thread's CPU alone (the upstream runs in another thread of this process).
    gateway0, sender0, start = cpu_seconds(gateway_pid), time.thread_time(), time.time()
    sent, ended, resets = 0, None, 0
    while time.time() - start < seconds and ids:
        wrote = False
        if shape == "runs":
            for s in ids:
                if window[s] >= per and connection >= per:
                    sock.sendall(write[s])
                    window[s] -= per
                    connection -= per
                    sent += per
                    wrote = True
        elif all(window[s] >= per for s in ids) and connection >= per * len(ids):
            sock.sendall(b"".join(one[s] for s in ids) * (per // frame_bytes) if len(ids) < streams else block)
            for s in ids:
                window[s] -= per
            connection -= per * len(ids)
            sent += per * len(ids)
            wrote = True
            if shape == "spread":
                time.sleep(gap)
        readable, _, _ = select.select([sock], [], [], 0 if wrote else 0.01)
        if not readable:
            continue
        data = sock.recv(1 << 20)
        if not data:
            ended = "closed"
            break
        buffered += data
        while len(buffered) >= 9:
            length = int.from_bytes(buffered[:3], "big")
            if len(buffered) < 9 + length:
                break
            kind, buffered_flags, stream = buffered[3], buffered[4], int.from_bytes(buffered[5:9], "big") & 0x7FFFFFFF
            payload = buffered[9:9 + length]
            buffered = buffered[9 + length:]
            if kind == 4 and buffered_flags & 0x1 == 0:
                sock.sendall(frame(4, 0x1, 0))
            elif kind == 8:
                increment = int.from_bytes(payload, "big")
                if stream == 0:
                    connection += increment
                elif stream in window:
                    window[stream] += increment
            elif kind == 7:
                ended = "GOAWAY"
            elif kind == 3 and stream in window:
                # A stream reset (its upstream slow to take the body, the queued-frame bound): the
                # others go on.
                resets += 1
                ids.remove(stream)
                del window[stream]
        if ended:
            break
    wall = time.time() - start
    sender1 = time.thread_time()
    # What the gateway still had to read of what was sent is counted too.
    time.sleep(1)
    gateway_cpu = cpu_seconds(gateway_pid) - gateway0
    sender_cpu = sender1 - sender0
    sock.close()
    frames = sent / frame_bytes
    return {"frames_per_s": frames / wall, "us_per_frame": 1e6 * gateway_cpu / max(frames, 1), "ns_per_wire_byte": 1e9 * gateway_cpu / max(frames * (9 + frame_bytes), 1),
            "gateway_core_pct": 100 * gateway_cpu / (wall + 1),
            "gateway_per_sender_cpu": gateway_cpu / max(sender_cpu, 1e-3), "resets": resets, "ended": ended}


def run(binary, upstream_port, args):
    port, admin = free_port(), free_port()
    with tempfile.TemporaryDirectory() as directory:
        config = os.path.join(directory, "gateway.yaml")
        with open(config, "w") as f:
            f.write(f"listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin}\naccess_log: false\n"
                    f"routes:\n  - name: only\n    path_prefix: /\n    max_body_bytes: 1GiB\n"
                    f"    upstream: {{targets: [127.0.0.1:{upstream_port}]}}\n")
        gateway = subprocess.Popen([binary, "gateway", "--config", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 20
            while time.time() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            return attack(port, gateway.pid, args.streams, args.seconds, args.shape, args.frame_bytes, args.gap_us / 1e6)
        finally:
            gateway.terminate()
            gateway.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--shape", choices=["runs", "interleaved", "spread"], default="runs")
    parser.add_argument("--gap-us", type=float, default=1000, help="the pause between writes of the spread shape")
    parser.add_argument("--frame-bytes", type=int, default=1, help="each DATA frame's payload (1; 16384 for the same bytes in large frames)")
    parser.add_argument("binaries", nargs="+")
    args = parser.parse_args()
    upstream_port = free_port()
    ready = threading.Event()
    threading.Thread(target=upstream, args=(upstream_port, ready), daemon=True).start()
    ready.wait(10)
    results = {b: [] for b in args.binaries}
    for round in range(args.rounds):
        for binary in args.binaries:
            result = run(binary, upstream_port, args)
            results[binary].append(result)
            print(f"round {round + 1} {binary}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()), flush=True)
    for binary, rows in results.items():
        medians = {k: statistics.median(r[k] for r in rows) for k in ("frames_per_s", "us_per_frame", "ns_per_wire_byte", "gateway_core_pct", "gateway_per_sender_cpu")}
        print(f"median {binary}: frames/s {medians['frames_per_s']:.0f}, µs/frame {medians['us_per_frame']:.3f}, ns/wire byte {medians['ns_per_wire_byte']:.2f}, "
              f"gateway {medians['gateway_core_pct']:.1f} % of a core, gateway/sender CPU {medians['gateway_per_sender_cpu']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
