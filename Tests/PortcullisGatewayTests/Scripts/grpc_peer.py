#!/usr/bin/env python3
"""A real gRPC server and client (Python grpcio) for the gateway's gRPC tests; messages are raw
bytes (no protobuf), so no generated code is needed.

    grpc_peer.py server PORT        serves pkg.Echo until killed; prints "ready"
    grpc_peer.py client PORT TOKEN  calls every method through PORT; prints one JSON object

The server answers Unary with "<subject>:<request>" (the subject from the X-Auth-Subject
metadata the gateway adds), ServerStream with 5 messages, Bidi with an echo of each message,
Slow after 2 s, Fail with NOT_FOUND "no such thing", Big with the request reversed.
"""
import json
import sys
import time
from concurrent import futures

import grpc

SERVICE = "pkg.Echo"


def subject(context):
    return dict(context.invocation_metadata()).get("x-auth-subject", "")


def unary(request, context):
    return subject(context).encode() + b":" + request


def server_stream(request, context):
    for i in range(5):
        yield b"%s-%d" % (request, i)


def bidi(requests, context):
    for message in requests:
        yield b"echo:" + message


def slow(request, context):
    time.sleep(2)
    return request


def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def big(request, context):
    return request[::-1]


def serve(port):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                         options=[("grpc.max_receive_message_length", 8 << 20), ("grpc.max_send_message_length", 8 << 20)])
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Big": grpc.unary_unary_rpc_method_handler(big),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def outcome(call):
    try:
        return {"ok": call()}
    except grpc.RpcError as error:
        return {"code": error.code().name, "details": error.details()}


def client(port, token):
    channel = grpc.insecure_channel(f"127.0.0.1:{port}",
                                    options=[("grpc.max_receive_message_length", 8 << 20), ("grpc.max_send_message_length", 8 << 20)])
    auth = [("authorization", "Bearer " + token)]
    method = lambda kind, name: getattr(channel, kind)(f"/{SERVICE}/{name}")
    big_message = bytes(range(256)) * 4096  # 1 MiB
    result = {
        "unary": outcome(lambda: method("unary_unary", "Unary")(b"hello", metadata=auth, timeout=10).decode()),
        "unauthenticated": outcome(lambda: method("unary_unary", "Unary")(b"hello", timeout=10).decode()),
        "bad_token": outcome(lambda: method("unary_unary", "Unary")(b"hello", metadata=[("authorization", "Bearer x.y.z")], timeout=10).decode()),
        "server_stream": outcome(lambda: [m.decode() for m in method("unary_stream", "ServerStream")(b"s", metadata=auth, timeout=10)]),
        "bidi": outcome(lambda: [m.decode() for m in method("stream_stream", "Bidi")(iter([b"a", b"b", b"c"]), metadata=auth, timeout=10)]),
        "deadline": outcome(lambda: method("unary_unary", "Slow")(b"x", metadata=auth, timeout=0.5).decode()),
        "status": outcome(lambda: method("unary_unary", "Fail")(b"x", metadata=auth, timeout=10).decode()),
        "big": outcome(lambda: method("unary_unary", "Big")(big_message, metadata=auth, timeout=20) == big_message[::-1]),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(int(sys.argv[2]))
    else:
        client(int(sys.argv[2]), sys.argv[3])
