#!/usr/bin/env python3
"""grpcio peer: grpcio-health-checking's stub calling Check and Watch on a server.

Checks a grpcore server's health service (tests/health.rs) through a client we did not
write.

Usage:
    health_client.py TARGET SERVICE

Protocol with the parent process, which runs the server and changes its statuses:
  1. Check("") and Check(SERVICE) must answer SERVING; Check("no.such.Service") must fail
     with NOT_FOUND.
  2. Watch("no.such.Service") must first send SERVICE_UNKNOWN (the call stays open; the
     client cancels it).
  3. Watch(SERVICE): each status received is printed on stdout as ``WATCH <STATUS>``
     (flushed), so that the parent can change the status in turn; the client expects
     SERVING, NOT_SERVING, SERVING, then cancels the watch.
  Every step is bounded (deadline 30 s a call).  The last stdout line is
  ``N passed, M failed``; the exit status is 0 only when all passed.
"""

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEADLINE = 30
Status = health_pb2.HealthCheckResponse.ServingStatus


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main():
    target, service = sys.argv[1], sys.argv[2]
    passed, failed = 0, 0

    def check(name, ok, detail=""):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print(f"FAIL {name}: {detail}", file=sys.stderr, flush=True)

    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        req = health_pb2.HealthCheckRequest

        for name in ["", service]:
            reply = stub.Check(req(service=name), timeout=DEADLINE, wait_for_ready=True)
            check(f"check {name!r}", reply.status == Status.Value("SERVING"), Status.Name(reply.status))
        try:
            stub.Check(req(service="no.such.Service"), timeout=DEADLINE)
            check("check unknown", False, "answered instead of failing")
        except grpc.RpcError as e:
            check("check unknown", e.code() == grpc.StatusCode.NOT_FOUND, str(e.code()))

        unknown = stub.Watch(req(service="no.such.Service"), timeout=DEADLINE)
        first = next(unknown)
        check("watch unknown", first.status == Status.Value("SERVICE_UNKNOWN"), Status.Name(first.status))
        unknown.cancel()

        watch = stub.Watch(req(service=service), timeout=DEADLINE)
        seen = []
        for reply in watch:
            seen.append(Status.Name(reply.status))
            out(f"WATCH {seen[-1]}")
            if len(seen) == 3:
                break
        watch.cancel()
        check("watch order", seen == ["SERVING", "NOT_SERVING", "SERVING"], str(seen))

    out(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
