#!/usr/bin/env python3
"""grpcio as an xDS client: counts which backend answers each of N unary calls.

Usage:
    xds_client.py TARGET N

The bootstrap comes from the environment (GRPC_XDS_BOOTSTRAP or
GRPC_XDS_BOOTSTRAP_CONFIG), as grpcio reads it.  Calls
/grpcore.test.Echo/Unary with an empty request, each with a 5 s deadline and
wait_for_ready (the first one waits for the xDS configuration); the response's
field 1 (EchoResponse.message) names the backend.  Prints one JSON line on
stdout: {"counts": {"<message>": n, ...}, "failures": n, "first_error": "..."}.
Exits 0 when every call succeeded.
"""

import peerlib  # noqa: F401

import json
import sys

import grpc


def message_of(response):
    """EchoResponse.message (field 1, a string) from the serialized response."""
    i = 0
    while i < len(response):
        key = response[i]
        i += 1
        if key == 0x0A:
            n, shift = 0, 0
            while True:
                b = response[i]
                i += 1
                n |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    break
            return response[i:i + n].decode()
        break
    return ""


def main():
    target, n = sys.argv[1], int(sys.argv[2])
    counts, failures, first_error = {}, 0, None
    with grpc.insecure_channel(target) as channel:
        unary = channel.unary_unary("/grpcore.test.Echo/Unary")
        for _ in range(n):
            try:
                who = message_of(unary(b"", timeout=5, wait_for_ready=True))
                counts[who] = counts.get(who, 0) + 1
            except grpc.RpcError as e:
                failures += 1
                if first_error is None:
                    first_error = "%s: %s" % (e.code(), e.details())
    print(json.dumps({"counts": counts, "failures": failures, "first_error": first_error}), flush=True)
    sys.exit(0 if failures == 0 else 1)


if __name__ == "__main__":
    main()
