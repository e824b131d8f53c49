#!/usr/bin/env python3
"""grpcio peer for tests/admission.rs: fires N concurrent unary Echo calls at once.

Usage: admission_client.py TARGET N SLEEP_MS

Each call asks the server's handler to sleep SLEEP_MS (EchoRequest.sleep_ms) and has a
20 s deadline.  Output (stdout): one line per call, ``<CODE_NAME> <latency_ms> <details>``
(``OK`` for a reply), in the order the calls finished.  Exit status 0 unless the
arguments were wrong.
"""

import concurrent.futures
import os
import sys
import time

import grpc

from peerlib import load_stubs

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.normpath(os.path.join(HERE, "..", "..", "proto", "echo.proto"))


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    target, n, sleep_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    pb2, pb2_grpc = load_stubs(PROTO)
    with grpc.insecure_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=20)
        stub = pb2_grpc.EchoStub(channel)

        def one(i):
            start = time.monotonic()
            try:
                stub.Unary(pb2.EchoRequest(message="python", seq=i, sleep_ms=sleep_ms), timeout=20)
                code, details = "OK", ""
            except grpc.RpcError as err:
                code, details = err.code().name, err.details()
            return code, (time.monotonic() - start) * 1e3, details

        with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
            for future in concurrent.futures.as_completed([pool.submit(one, i) for i in range(n)]):
                code, ms, details = future.result()
                print(f"{code} {ms:.1f} {details}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
