#!/usr/bin/env python3
"""Mixed-protocol load on one port: grpcio calls, HTTP/1.1 requests, bytes of no protocol.

The Rust test tests/sockets.rs runs this against a grpcore server whose owned listener
serves gRPC (the Echo service of echo_server.py) and HTTP/1.1 (GET /healthz answers
200 "ok <path>") on the same port, to check that each client gets its own protocol's
answer while the others run.

Usage:
    one_port_client.py HOST:PORT --grpc N --http N --garbage N [--concurrency C]

Every grpcio call uses a channel of its own with a local subchannel pool, so it is a
connection of its own; every HTTP request and every garbage client is one connection
too. The kinds are interleaved and run C at a time (default 50).
A garbage client sends b"\\x16\\x03\\x01\\x00\\x05hello" (a TLS record header) and
expects the server to close the connection without answering.

Output (stdout): one line ``grpc OK/N http OK/N garbage OK/N``, then, for each
failure (at most 20), ``FAIL <kind> <i>: <reason>``. Exit 0 when everything passed.
"""

import argparse
import concurrent.futures
import http.client
import os
import socket
import sys

import grpc

from peerlib import load_stubs

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.normpath(os.path.join(HERE, "..", "..", "proto", "echo.proto"))
TIMEOUT = 30


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("--grpc", type=int, default=0)
    parser.add_argument("--http", type=int, default=0)
    parser.add_argument("--garbage", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    pb2, pb2_grpc = load_stubs(PROTO)
    host, port = args.target.rsplit(":", 1)

    def grpc_call(i):
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(args.target, options=options) as channel:
            stub = pb2_grpc.EchoStub(channel)
            reply = stub.Unary(pb2.EchoRequest(message=f"py-{i}", seq=i), timeout=TIMEOUT)
            if reply.message != f"py-{i}" or reply.seq != i:
                raise AssertionError(f"wrong echo {reply.message!r} {reply.seq}")

    def http_get(i):
        conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
        try:
            conn.request("GET", f"/healthz?i={i}")
            resp = conn.getresponse()
            body = resp.read().decode()
            if resp.status != 200 or body != f"ok /healthz?i={i}":
                raise AssertionError(f"HTTP {resp.status} {body!r}")
        finally:
            conn.close()

    def garbage(i):
        with socket.create_connection((host, int(port)), timeout=TIMEOUT) as s:
            s.sendall(b"\x16\x03\x01\x00\x05hello")
            try:
                data = s.recv(100)
            except ConnectionResetError:
                data = b""
            if data:
                raise AssertionError(f"the server answered {data!r}")

    jobs = []
    kinds = [("grpc", grpc_call, args.grpc), ("http", http_get, args.http), ("garbage", garbage, args.garbage)]
    longest = max(n for _, _, n in kinds) if kinds else 0
    for i in range(longest):
        for name, fn, n in kinds:
            if i < n:
                jobs.append((name, i, fn))
    ok = {name: 0 for name, _, _ in kinds}
    failures = []
    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        futures = {pool.submit(fn, i): (name, i) for name, i, fn in jobs}
        for future in concurrent.futures.as_completed(futures):
            name, i = futures[future]
            try:
                future.result()
                ok[name] += 1
            except Exception as e:  # noqa: BLE001 - every failure is reported
                failures.append(f"FAIL {name} {i}: {type(e).__name__}: {e}")
    print(" ".join(f"{name} {ok[name]}/{n}" for name, _, n in kinds), flush=True)
    for line in failures[:20]:
        print(line, flush=True)
    sys.exit(0 if not failures else 1)


if __name__ == "__main__":
    main()
