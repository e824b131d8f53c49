#!/usr/bin/env python3
"""One call of any kind with raw bytes, through grpcio; prints how it ended.

Usage: raw_call.py [--tls-ca F --server-name-override N [--client-cert F --client-key F]]
                   TARGET KIND PATH [KEY=VALUE ...]

KIND is unary, client_stream, server_stream or bidi. One empty message is sent (the
streaming kinds then half-close); the request metadata is the KEY=VALUE pairs. Prints one
line, ``CODE <number> <details>`` (0 and ``OK`` on success), and exits 0 whatever the
status: the caller judges it. With ``--tls-ca`` the call goes over TLS (mutual TLS with
a client certificate and key).
"""
import sys

import grpc


def take_options(args):
    """Removes the leading --flag VALUE pairs from args; returns them as a dict."""
    options = {}
    while args and args[0].startswith("--"):
        options[args[0][2:]] = args[1]
        del args[:2]
    return options


def open_channel(target, options):
    if "tls-ca" not in options:
        return grpc.insecure_channel(target)
    read = lambda key: open(options[key], "rb").read() if key in options else None
    creds = grpc.ssl_channel_credentials(read("tls-ca"), read("client-key"), read("client-cert"))
    override = [("grpc.ssl_target_name_override", options["server-name-override"])] if "server-name-override" in options else []
    return grpc.secure_channel(target, creds, options=override)


def main(argv):
    args = argv[1:]
    options = take_options(args)
    target, kind, path = args[0:3]
    metadata = [tuple(pair.split("=", 1)) for pair in args[3:]]
    raw = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with open_channel(target, options) as channel:
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
