#!/usr/bin/env python3
"""A real gRPC server and client (Python grpcio) for the gateway's gRPC tests; messages are raw
bytes (no protobuf), so no generated code is needed.

    grpc_peer.py server PORT [CERT KEY]
                                    serves pkg.Echo until killed (over TLS with CERT and KEY);
                                    prints "ready"
    grpc_peer.py client PORT TOKEN  calls every method through PORT; prints one JSON object
    grpc_peer.py early PORT TOKEN N with a Watch stream open on the same connection, makes N
                                    calls to First one after another, each keeping its request
                                    stream open until the answer has come; prints {"ok": calls
                                    that ended OK, "failed": {code: count}, "watch": "open" or
                                    the code the Watch stream ended with}
    grpc_peer.py parallel PORT TOKEN N
                                    one Unary call, then N Slow calls at once; prints
                                    {"codes": [each Slow call's code], "seconds": [its duration]}
    grpc_peer.py calls PORT TOKEN METHOD N
                                    N unary calls of METHOD (request "hello") one after
                                    another on one channel; prints a JSON list of each outcome
                                    ({"ok": answer} or {"code", "details"})
    grpc_peer.py pause PORT TOKEN SECONDS
                                    one Bidi call that sends "a", waits SECONDS, sends "b"
                                    and ends; prints its outcome ({"ok": [answers]} or
                                    {"code", "details"})
    grpc_peer.py hold PLAN OUT READY DONE
                                    opens one Watch stream per PLAN entry ({"port", "token"}),
                                    touches READY once each has a message, waits for DONE (at
                                    most 60 s) and 1.5 s more, then writes to OUT how each ended

The server allows GRPC_PEER_MAX_STREAMS concurrent streams per connection when that is set
(its SETTINGS_MAX_CONCURRENT_STREAMS). It answers Unary with "<subject>:<request>" (the subject from the X-Auth-Subject
metadata the gateway adds), ServerStream with 5 messages, Bidi with an echo of each message,
Slow after 2 s, Fail with NOT_FOUND "no such thing", Big with the request reversed, First with
"first:<request>" for the first message of its stream, ending the call (status OK) without
reading the rest: the server finishes while the client is still sending, which gRPC servers
follow with RST_STREAM (NO_ERROR) to stop the client's half (RFC 9113 §8.1).
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


def first(requests, context):
    yield b"first:" + next(requests)


def slow(request, context):
    time.sleep(2)
    return request


def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def big(request, context):
    return request[::-1]


def watch(request, context):
    """A message every 100 ms until the call ends."""
    i = 0
    while context.is_active():
        yield b"tick-%d" % i
        i += 1
        time.sleep(0.1)


def serve(port, cert=None, key=None):
    import os
    options = [("grpc.max_receive_message_length", 8 << 20), ("grpc.max_send_message_length", 8 << 20)]
    if os.environ.get("GRPC_PEER_MAX_STREAMS"):
        options.append(("grpc.max_concurrent_streams", int(os.environ["GRPC_PEER_MAX_STREAMS"])))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=256), options=options)
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "First": grpc.stream_stream_rpc_method_handler(first),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Big": grpc.unary_unary_rpc_method_handler(big),
        "Watch": grpc.unary_stream_rpc_method_handler(watch),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    if cert:
        with open(cert, "rb") as c, open(key, "rb") as k:
            server.add_secure_port(f"127.0.0.1:{port}", grpc.ssl_server_credentials([(k.read(), c.read())]))
    else:
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


def calls(port, token, name, count):
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    auth = [("authorization", "Bearer " + token)]
    call = channel.unary_unary(f"/{SERVICE}/{name}")
    print(json.dumps([outcome(lambda: call(b"hello", metadata=auth, timeout=10).decode("latin-1")) for _ in range(count)]), flush=True)


def early(port, token, count):
    import threading
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    auth = [("authorization", "Bearer " + token)]
    watch_call = channel.unary_stream(f"/{SERVICE}/Watch")(b"w", metadata=auth, timeout=120)
    watch_ended = {}

    def follow():
        try:
            for _ in watch_call:
                pass
            watch_ended["code"] = "OK"
        except grpc.RpcError as error:
            watch_ended["code"] = error.code().name

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    call = channel.stream_stream(f"/{SERVICE}/First")
    ok, failed = 0, {}
    for i in range(count):
        answered = threading.Event()

        def requests():
            yield b"%d" % i
            answered.wait(10)  # the request stream stays open until the answer has come

        try:
            replies = []
            for reply in call(requests(), metadata=auth, timeout=10):
                replies.append(reply)
                answered.set()
            ok += replies == [b"first:%d" % i]
        except grpc.RpcError as error:
            failed[error.code().name] = failed.get(error.code().name, 0) + 1
        finally:
            answered.set()
    time.sleep(0.3)
    watch = watch_ended.get("code", "open")
    watch_call.cancel()
    print(json.dumps({"ok": ok, "failed": failed, "watch": watch}), flush=True)


def parallel(port, token, count):
    import threading
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    auth = [("authorization", "Bearer " + token)]
    channel.unary_unary(f"/{SERVICE}/Unary")(b"warm", metadata=auth, timeout=10)
    slow_call = channel.unary_unary(f"/{SERVICE}/Slow")
    codes, seconds = [None] * count, [None] * count

    def one(i):
        start = time.monotonic()
        try:
            slow_call(b"%d" % i, metadata=auth, timeout=20)
            codes[i] = "OK"
        except grpc.RpcError as error:
            codes[i] = error.code().name
        seconds[i] = round(time.monotonic() - start, 2)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"codes": codes, "seconds": seconds}), flush=True)


def pause(port, token, seconds):
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    auth = [("authorization", "Bearer " + token)]

    def requests():
        yield b"a"
        time.sleep(seconds)
        yield b"b"

    call = channel.stream_stream(f"/{SERVICE}/Bidi")
    print(json.dumps(outcome(lambda: [m.decode() for m in call(requests(), metadata=auth, timeout=seconds + 10)])), flush=True)


def hold(plan_file, out_file, ready_file, done_file):
    import os
    import threading
    with open(plan_file) as f:
        plan = json.load(f)
    channels = {}
    states = []
    for index, entry in enumerate(plan):
        port = entry["port"]
        if port not in channels:
            channels[port] = grpc.insecure_channel(f"127.0.0.1:{port}")
        state = {"index": index, "messages": 0, "code": None, "details": None, "ended_at": None,
                 "first": threading.Event()}
        states.append(state)
        call = channels[port].unary_stream(f"/{SERVICE}/Watch")(b"w", metadata=[("authorization", "Bearer " + entry["token"])])
        state["call"] = call

        def consume(call=call, state=state):
            try:
                for _ in call:
                    state["messages"] += 1
                    state["first"].set()
                state["code"] = "OK"
            except grpc.RpcError as error:
                state["code"] = error.code().name
                state["details"] = error.details()
            state["ended_at"] = time.time()
            state["first"].set()

        threading.Thread(target=consume, daemon=True).start()
    for state in states:
        state["first"].wait(20)
    open(ready_file, "w").close()
    deadline = time.time() + 60
    while not os.path.exists(done_file) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)
    result = []
    for state in states:
        open_at_end = state["code"] is None
        before = state["messages"]
        if open_at_end:
            time.sleep(0.25)
        result.append({"index": state["index"], "code": state["code"], "details": state["details"], "ended_at": state["ended_at"],
                       "open_at_end": open_at_end, "still_streaming": open_at_end and state["messages"] > before})
        if open_at_end:
            state["call"].cancel()
    with open(out_file, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(int(sys.argv[2]), *sys.argv[3:5])
    elif sys.argv[1] == "early":
        early(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "parallel":
        parallel(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "calls":
        calls(int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]))
    elif sys.argv[1] == "hold":
        hold(*sys.argv[2:6])
    elif sys.argv[1] == "pause":
        pause(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
    else:
        client(int(sys.argv[2]), sys.argv[3])
