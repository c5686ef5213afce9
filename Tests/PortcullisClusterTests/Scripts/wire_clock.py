#!/usr/bin/env python3
"""When each gateway put a connection's end on the wire, by the kernel's clock.

  wire_clock.py --ports P1,P2,... --out O --done D

Captures the loopback interface (an AF_PACKET socket: needs root or CAP_NET_RAW) and follows
every TCP connection whose server side is one of the ports, from its SYN-ACK on, reassembling
what the server sends. It prints "ready" once capturing. Until file D exists it records:
  - a WebSocket close frame (opcode 8) sent on a connection that answered 101 (RFC 6455 §5.5.1),
  - an HTTP/2 stream's end sent by the server: a HEADERS frame with END_STREAM (gRPC's trailers)
    or a RST_STREAM (RFC 9113 §6.2, §6.4),
each with the kernel's receive timestamp of the segment that completed it (SO_TIMESTAMPNS,
Unix time; on loopback, the moment the gateway's write reached the client's socket), and
writes them to O as JSON: {"events": [{"t", "port", "client_port", "kind", "stream", "code"}],
"lost": flows the capture missed bytes of, "packets": segments seen}. The clients' own clocks
add their scheduling (Python serving hundreds of connections); this one does not.
Exits 77 when the capture socket cannot be opened (no CAP_NET_RAW).
"""
import argparse
import json
import os
import select
import socket
import struct
import sys

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33


class Flow:
    """What one server port sent on one connection, reassembled in sequence order."""

    def __init__(self, next_seq):
        self.next = next_seq
        self.buffer = bytearray()
        self.mode = None  # "http1" until the head is read, then "ws", "h2" or "other"
        self.lost = False


def parse(flow, t, port, client_port, events):
    """Consumes whole frames from the flow's buffer, recording the ends it finds."""
    buf = flow.buffer
    while True:
        if flow.mode is None:
            if len(buf) < 8:
                return
            flow.mode = "http1" if buf.startswith(b"HTTP/") else "h2"
        if flow.mode == "http1":
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            flow.mode = "ws" if buf.startswith(b"HTTP/1.1 101") else "other"
            del buf[:end + 4]
        if flow.mode == "other":
            buf.clear()
            return
        if flow.mode == "ws":
            if len(buf) < 2:
                return
            length, offset = buf[1] & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, offset = struct.unpack(">H", buf[2:4])[0], 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, offset = struct.unpack(">Q", buf[2:10])[0], 10
            if buf[1] & 0x80:
                offset += 4
            if len(buf) < offset + length:
                return
            if buf[0] & 0x0F == 8:
                code = struct.unpack(">H", buf[offset:offset + 2])[0] if length >= 2 else None
                events.append({"t": t, "port": port, "client_port": client_port, "kind": "ws-close", "stream": None, "code": code})
            del buf[:offset + length]
        elif flow.mode == "h2":
            if len(buf) < 9:
                return
            length = int.from_bytes(buf[0:3], "big")
            if len(buf) < 9 + length:
                return
            kind, flags = buf[3], buf[4]
            stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            if kind == 1 and flags & 0x1:
                events.append({"t": t, "port": port, "client_port": client_port, "kind": "h2-end", "stream": stream, "code": None})
            elif kind == 3:
                code = int.from_bytes(buf[9:13], "big")
                events.append({"t": t, "port": port, "client_port": client_port, "kind": "h2-reset", "stream": stream, "code": code})
            del buf[:9 + length]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--done", required=True)
    args = parser.parse_args()
    ports = {int(p) for p in args.ports.split(",")}
    try:
        capture = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        capture.bind(("lo", 0))
    except PermissionError:
        print("wire_clock: capturing needs CAP_NET_RAW", file=sys.stderr)
        sys.exit(77)
    capture.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    try:
        capture.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
    except OSError:
        capture.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
    flows, events, packets = {}, [], 0
    print("ready", flush=True)
    while not os.path.exists(args.done):
        ready, _, _ = select.select([capture], [], [], 0.05)
        if not ready:
            continue
        while True:
            try:
                data, ancillary, _, address = capture.recvmsg(65600, socket.CMSG_SPACE(16), socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            # Loopback shows each packet twice; the incoming copy is the one delivered.
            if address[2] == PACKET_OUTGOING or len(data) < 14 + 20 or data[12:14] != b"\x08\x00":
                continue
            ip = data[14:]
            if ip[9] != 6:
                continue
            ihl = (ip[0] & 0x0F) * 4
            total = struct.unpack(">H", ip[2:4])[0]
            tcp = ip[ihl:total]
            src, dst, seq = struct.unpack(">HHI", tcp[0:8])
            if src not in ports:
                continue
            t = None
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    t = sec + nsec / 1e9
            flags = tcp[13]
            payload = tcp[(tcp[12] >> 4) * 4:]
            key = (src, dst)
            if flags & 0x02:  # SYN-ACK: the server's side begins after it
                flows[key] = Flow((seq + 1) & 0xFFFFFFFF)
                continue
            flow = flows.get(key)
            if flow is None or flow.lost or not payload:
                continue
            packets += 1
            delta = (seq - flow.next) & 0xFFFFFFFF
            if delta >= 0x80000000:  # a retransmission, maybe overlapping what is new
                skip = (flow.next - seq) & 0xFFFFFFFF
                if skip >= len(payload):
                    continue
                payload = payload[skip:]
            elif delta > 0:
                flow.lost = True
                flow.buffer.clear()
                continue
            flow.buffer += payload
            flow.next = (flow.next + len(payload)) & 0xFFFFFFFF
            parse(flow, t, src, dst, events)
    result = {"events": events, "lost": sum(1 for f in flows.values() if f.lost), "packets": packets}
    with open(args.out + ".tmp", "w") as f:
        json.dump(result, f)
    os.rename(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
