#!/usr/bin/env python3
"""One call of any kind with raw bytes, through grpcio; prints how it ended.

Usage: raw_call.py TARGET KIND PATH [KEY=VALUE ...]

KIND is unary, client_stream, server_stream or bidi. One empty message is sent (the
streaming kinds then half-close); the request metadata is the KEY=VALUE pairs. Prints one
line, ``CODE <number> <details>`` (0 and ``OK`` on success), and exits 0 whatever the
status: the caller judges it.
"""
import sys

import grpc


def main(argv):
    target, kind, path = argv[1:4]
    metadata = [tuple(pair.split("=", 1)) for pair in argv[4:]]
    raw = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with grpc.insecure_channel(target) as channel:
        try:
            if kind == "unary":
                channel.unary_unary(path, **raw)(b"", timeout=10, metadata=metadata)
            elif kind == "client_stream":
                channel.stream_unary(path, **raw)(iter([b""]), timeout=10, metadata=metadata)
            elif kind == "server_stream":
                list(channel.unary_stream(path, **raw)(b"", timeout=10, metadata=metadata))
            elif kind == "bidi":
                list(channel.stream_stream(path, **raw)(iter([b""]), timeout=10, metadata=metadata))
            else:
                print(f"unknown kind {kind}", file=sys.stderr)
                return 2
            print("CODE 0 OK")
        except grpc.RpcError as e:
            print("CODE", e.code().value[0], e.details())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
