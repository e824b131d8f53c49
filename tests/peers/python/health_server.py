#!/usr/bin/env python3
"""grpcio peer: the standard health service (grpcio-health-checking's HealthServicer).

grpcore's health client is checked against it (tests/health.rs).

Usage:
    health_server.py

Protocol with the parent process:
  * stdout carries exactly one line, ``PORT <n>``, flushed as soon as the server listens
    on 127.0.0.1:<n> (insecure).  Diagnostics go to stderr.
  * stdin carries commands, one a line: ``set SERVICE STATUS`` sets the status of
    SERVICE (``-`` stands for the empty name, the server as a whole) to STATUS (a
    ServingStatus name such as SERVING or NOT_SERVING).  Each command is answered on
    stderr only.  Before any command, "" is SERVING (HealthServicer's start) and
    nothing else is known.
  * The server stops and exits 0 when stdin reaches EOF, on SIGTERM or SIGINT, or when
    its parent process goes away.
"""

import os
import signal
import sys
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peerlib import watch_parent  # noqa: E402


def log(msg):
    print(f"health_server: {msg}", file=sys.stderr, flush=True)


def read_commands(servicer, stop):
    """Apply `set` commands from stdin until it ends; then ask the server to stop."""
    for line in sys.stdin:
        words = line.split()
        if len(words) == 3 and words[0] == "set":
            service = "" if words[1] == "-" else words[1]
            status = health_pb2.HealthCheckResponse.ServingStatus.Value(words[2])
            servicer.set(service, status)
            log(f"{service!r} is now {words[2]}")
        elif words:
            log(f"unknown command: {line.strip()!r}")
    stop.set()


def main():
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    servicer = health.HealthServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    if not port:
        log("could not bind 127.0.0.1:0")
        return 1
    server.start()
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()

    threading.Thread(target=read_commands, args=(servicer, stop), name="commands", daemon=True).start()
    watch_parent(stop)
    while not stop.wait(0.5):
        pass
    servicer.enter_graceful_shutdown()
    server.stop(1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
