#!/usr/bin/env python3
"""grpcio peer: a server for grpcore.test.Echo (tests/proto/echo.proto).

The Rust integration tests start this as a subprocess so that grpcore's
client is checked against an implementation we did not write.

Usage:
    echo_server.py [--max-receive-message-length N] [--proto PATH]
                   [--compression none|gzip|deflate]
                   [--tls-cert PEM --tls-key PEM [--tls-ca PEM]
                    [--require-client-cert]]

--compression sets the server's default compression for responses (grpcio's
``compression=``); it applies to every call whose client accepts that
algorithm (grpc-accept-encoding).  Compressed requests are accepted whatever
this flag says.  Default: none.

--tls-cert/--tls-key make the port TLS (grpcio's ssl_server_credentials) with
that certificate chain and private key.  --tls-ca names the CA certificates
that client certificates are checked against; with --require-client-cert a
client must present one that chains to them (mutual TLS; needs --tls-ca).
Without --tls-cert the port is insecure, as before.

Protocol with the parent process:
  * stdout carries exactly one line, ``PORT <n>``, flushed as soon as the
    server listens on 127.0.0.1:<n> (insecure, or TLS with --tls-cert).  Nothing else is written to
    stdout; diagnostics go to stderr.
  * The server runs until one of: its stdin reaches EOF (when stdin is a pipe,
    a socket or a terminal; /dev/null or a closed stdin is not watched),
    SIGTERM or SIGINT, or its parent process goes away.  It then stops and
    exits with status 0.

The Python stubs are generated at start-up from the .proto with
grpc_tools.protoc into a temporary directory, so nothing generated is kept.

Semantics of every method (see the field comments in echo.proto):
  * Request metadata whose key starts with ``x-echo-`` is sent back in the
    initial metadata under the same key and in the trailing metadata with the
    prefix replaced by ``x-trailer-`` (``-bin`` values stay bytes). A W3C
    ``traceparent`` comes back in the initial metadata as ``x-seen-traceparent``.
  * sleep_ms: sleep in small steps before answering, stopping early once the
    RPC is no longer active (cancelled or past its deadline).
  * fail_code != 0: end the RPC with that status code and fail_message; if
    fail_details is non-empty it is sent as ``grpc-status-details-bin``.
  * Response payload: b'x' * response_size when response_size > 0, otherwise
    the request's payload.
Per method:
  * Unary: one response echoing message, seq and payload.
  * ClientStream: reads every request (sleep_ms applies per request; a request
    with fail_code aborts right after it is read).  Response: message = the
    request messages joined with ",", seq = number of requests, payload =
    b'x' * response_size of the last request that set it, else the request
    payloads concatenated.
  * ServerStream: sends seq responses numbered 0..seq-1, each with
    message = req.message and the payload rule above, sleeping sleep_ms before
    each one; then fails with fail_code if it is set.
  * Bidi: answers each request as it arrives (sleep_ms, then fail_code aborts
    the stream mid-way, else an echo of message/seq/payload).
"""

import os

# First thing: peerlib records our parent's pid, so a parent dying during start-up is
# still noticed.
import peerlib  # noqa: F401

import argparse
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

from peerlib import load_stubs, read_file, watch_parent, watch_stdin

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO = os.path.normpath(os.path.join(HERE, "..", "..", "proto", "echo.proto"))

ECHO_PREFIX = "x-echo-"
TRAILER_PREFIX = "x-trailer-"
DETAILS_KEY = "grpc-status-details-bin"
SLEEP_STEP_S = 0.01

CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}

# --compression values.  None (not NoCompression) for "none" keeps grpcio's
# default behaviour exactly as it was before the flag existed.
COMPRESSION = {
    "none": None,
    "gzip": grpc.Compression.Gzip,
    "deflate": grpc.Compression.Deflate,
}


def log(msg):
    print(f"echo_server: {msg}", file=sys.stderr, flush=True)


def echo_metadata(context):
    """(initial, trailing) metadata lists derived from x-echo-* request keys, plus the
    W3C ``traceparent`` the call arrived with, as ``x-seen-traceparent``."""
    initial, trailing = [], []
    for key, value in context.invocation_metadata():
        if key.startswith(ECHO_PREFIX):
            initial.append((key, value))
            trailing.append((TRAILER_PREFIX + key[len(ECHO_PREFIX):], value))
        elif key == "traceparent":
            initial.append(("x-seen-traceparent", value))
    return initial, trailing


def start_rpc(context):
    """Echo metadata: initial now, trailing recorded for the end of the RPC."""
    initial, trailing = echo_metadata(context)
    if initial:
        context.send_initial_metadata(initial)
    context.set_trailing_metadata(trailing)
    return trailing


def sleep_while_active(context, sleep_ms):
    """Sleep sleep_ms in small steps; False if the RPC stopped meanwhile."""
    if sleep_ms <= 0:
        return context.is_active()
    end = time.monotonic() + sleep_ms / 1000.0
    while True:
        if not context.is_active():
            return False
        left = end - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(SLEEP_STEP_S, left))


def fail(context, trailing, req):
    """End the RPC with req.fail_code / fail_message / fail_details (raises)."""
    code = CODES_BY_NUMBER.get(req.fail_code)
    message = req.fail_message
    if code is None or code is grpc.StatusCode.OK:
        message = f"unknown fail_code {req.fail_code}: {message}"
        code = grpc.StatusCode.UNKNOWN
    metadata = list(trailing)
    if req.fail_details:
        metadata.append((DETAILS_KEY, bytes(req.fail_details)))
    context.set_trailing_metadata(metadata)
    context.abort(code, message)


def response_payload(req):
    if req.response_size > 0:
        return b"x" * req.response_size
    return req.payload


def make_servicer(pb2, pb2_grpc):
    class EchoServicer(pb2_grpc.EchoServicer):
        def Unary(self, req, context):
            trailing = start_rpc(context)
            if not sleep_while_active(context, req.sleep_ms):
                return pb2.EchoResponse()  # nobody is listening any more
            if req.fail_code:
                fail(context, trailing, req)
            return pb2.EchoResponse(message=req.message, seq=req.seq,
                                    payload=response_payload(req))

        def ClientStream(self, request_iterator, context):
            trailing = start_rpc(context)
            messages, payloads, sized = [], [], None
            for req in request_iterator:
                if not sleep_while_active(context, req.sleep_ms):
                    return pb2.EchoResponse()
                if req.fail_code:
                    fail(context, trailing, req)
                messages.append(req.message)
                payloads.append(req.payload)
                if req.response_size > 0:
                    sized = req.response_size
            payload = b"x" * sized if sized is not None else b"".join(payloads)
            return pb2.EchoResponse(message=",".join(messages), seq=len(messages),
                                    payload=payload)

        def ServerStream(self, req, context):
            trailing = start_rpc(context)
            payload = response_payload(req)
            for i in range(max(req.seq, 0)):
                if not sleep_while_active(context, req.sleep_ms):
                    return
                yield pb2.EchoResponse(message=req.message, seq=i, payload=payload)
            if req.fail_code:
                fail(context, trailing, req)

        def Bidi(self, request_iterator, context):
            trailing = start_rpc(context)
            for req in request_iterator:
                if not sleep_while_active(context, req.sleep_ms):
                    return
                if req.fail_code:
                    fail(context, trailing, req)
                yield pb2.EchoResponse(message=req.message, seq=req.seq,
                                       payload=response_payload(req))

    return EchoServicer()


def main(argv=None):
    parser = argparse.ArgumentParser(description="grpcio Echo server for grpcore tests")
    parser.add_argument("--max-receive-message-length", type=int, default=None,
                        metavar="N", help="server option grpc.max_receive_message_length")
    parser.add_argument("--proto", default=DEFAULT_PROTO,
                        help=f"path of echo.proto (default: {DEFAULT_PROTO})")
    parser.add_argument("--compression", choices=sorted(COMPRESSION), default="none",
                        help="default compression of responses (default: none)")
    parser.add_argument("--tls-cert", metavar="PEM",
                        help="serve TLS with this certificate chain (needs --tls-key)")
    parser.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    parser.add_argument("--tls-ca", metavar="PEM",
                        help="CA certificates that client certificates must chain to")
    parser.add_argument("--require-client-cert", action="store_true",
                        help="require a client certificate (mutual TLS; needs --tls-ca)")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if (args.tls_ca or args.require_client_cert) and not args.tls_cert:
        parser.error("--tls-ca and --require-client-cert need --tls-cert")
    if args.require_client_cert and not args.tls_ca:
        parser.error("--require-client-cert needs --tls-ca")

    pb2, pb2_grpc = load_stubs(args.proto)

    options = []
    if args.max_receive_message_length is not None:
        options.append(("grpc.max_receive_message_length", args.max_receive_message_length))

    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), options=options,
                         compression=COMPRESSION[args.compression])
    pb2_grpc.add_EchoServicer_to_server(make_servicer(pb2, pb2_grpc), server)
    if args.tls_cert:
        credentials = grpc.ssl_server_credentials(
            [(read_file(args.tls_key), read_file(args.tls_cert))],
            root_certificates=read_file(args.tls_ca) if args.tls_ca else None,
            require_client_auth=args.require_client_cert)
        port = server.add_secure_port("127.0.0.1:0", credentials)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    if not port:
        log("could not bind 127.0.0.1:0")
        return 1
    server.start()

    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()

    watch_stdin(stop)
    watch_parent(stop)
    while not stop.wait(0.5):
        pass

    server.stop(grace=0.5).wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
