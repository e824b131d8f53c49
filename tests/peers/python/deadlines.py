#!/usr/bin/env python3
"""Deadlines from grpcore's proto options and mapped application errors, seen by grpcio.

The messages of compiler/tests/protos/policy/grpcore/policy/library.proto are one string
field (title = 1) each: they are encoded and decoded by hand here, no stubs needed.

Usage:
  deadlines.py server    serves every method of grpcore.policy.Library (raw bytes) by
                         answering with a Book whose title is the time the call has left, in
                         whole milliseconds (context.time_remaining()), or "none" without a
                         deadline; prints ``PORT <n>`` and runs until stdin closes.
  deadlines.py client TARGET PEER
                         calls a grpcore server of the Library and Plain services at TARGET,
                         case by case, and prints one JSON object: per case the status code's
                         name, the title of the answer (if any) and the ErrorInfo that
                         grpcio-status found (if any). PEER (host:port of a server of this
                         script) is what AskPeer's child call goes to.
"""
import json
import sys
import threading
from concurrent import futures

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

import peerlib

LIBRARY = "grpcore.policy.Library"


def encode_title(title):
    data = title.encode()
    length = bytearray()
    n = len(data)
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            length.append(byte | 0x80)
        else:
            length.append(byte)
            break
    return b"\x0a" + bytes(length) + data if data else b""


def decode_title(data):
    # Field 1, length-delimited, the only field either side writes.
    if not data:
        return ""
    assert data[0] == 0x0A, data
    n, shift, i = 0, 0, 1
    while True:
        byte = data[i]
        i += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return data[i:i + n].decode()


def remaining(request, context):
    left = context.time_remaining()
    return encode_title("none" if left is None else str(int(left * 1000)))


def serve():
    raw = dict(request_deserializer=lambda b: b, response_serializer=lambda b: b)
    methods = ("GetBook", "AskPeer", "Browse")
    handler = grpc.method_handlers_generic_handler(
        LIBRARY, {m: grpc.unary_unary_rpc_method_handler(remaining, **raw) for m in methods})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    stop = threading.Event()
    peerlib.watch_stdin(stop)
    peerlib.watch_parent(stop)
    stop.wait()
    server.stop(0)
    return 0


def call(channel, path, title, timeout):
    raw = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        answer = channel.unary_unary(path, **raw)(encode_title(title), timeout=timeout)
        return {"code": "OK", "title": decode_title(answer), "error_info": None}
    except grpc.RpcError as error:
        info = None
        status = rpc_status.from_call(error)
        for detail in status.details if status is not None else ():
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                unpacked = error_details_pb2.ErrorInfo()
                detail.Unpack(unpacked)
                info = {"reason": unpacked.reason, "domain": unpacked.domain}
        return {"code": error.code().name, "message": error.details(), "title": None, "error_info": info}


def client(target, peer):
    library = f"/{LIBRARY}/"
    cases = {
        # A method that needs a deadline, called without one.
        "get_book_without_deadline": (library + "GetBook", "remaining", None),
        # The same with a deadline far beyond the service's 2 s maximum.
        "get_book_with_60s": (library + "GetBook", "remaining", 60),
        # A method marked no_deadline_needed, called without one.
        "browse_without_deadline": (library + "Browse", "remaining", None),
        # A service with no options: nothing checked.
        "plain_without_deadline": ("/grpcore.policy.Plain/Remaining", "", None),
        # The handler's child call inherits the clamped deadline.
        "ask_peer_with_60s": (library + "AskPeer", peer, 60),
        # Application errors.
        "missing": (library + "GetBook", "missing", 10),
        "full": (library + "GetBook", "full", 10),
        "torn": (library + "GetBook", "torn", 10),
    }
    with grpc.insecure_channel(target) as channel:
        seen = {name: call(channel, *case) for name, case in cases.items()}
    print(json.dumps(seen))
    return 0


def main(argv):
    if argv[1:2] == ["server"]:
        return serve()
    if argv[1:2] == ["client"] and len(argv) == 4:
        return client(argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
