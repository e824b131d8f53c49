#!/usr/bin/env python3
"""grpcio peer: a client that checks a grpcore.test.Echo server.

The Rust integration tests run this against a grpcore server implementing the
Echo semantics described in echo_server.py, so that grpcore's server is
checked against a client we did not write.

Usage:
    echo_client.py [--proto PATH] [--compression none|gzip|deflate]
                   [--tls-ca PEM [--client-cert PEM --client-key PEM]
                    [--server-name-override NAME]] TARGET [CASE...]

TARGET is host:port (e.g. 127.0.0.1:50051), reached with an insecure channel,
or with TLS when --tls-ca is given: the server's certificate must chain to the
CA certificates in that file and name the target's host (or NAME, with
--server-name-override, grpc.ssl_target_name_override).  --client-cert and
--client-key present a client certificate (mutual TLS).
--compression sets the channel's default compression for requests (grpcio's
``compression=``; default none).
CASE is one or more case names (no CASE, or "all", runs every case):
    unary metadata status deadline unimplemented undecodable oversized
    over_1k under_1k client_stream server_stream bidi compressed_unary compressed_stream

The streaming cases check every message's content and order (by seq), the
echoed metadata (initial x-echo-*, trailing x-trailer-*) and a status that
ends a stream part-way (code, message, grpc-status-details-bin, trailers).
over_1k (a 2 KiB request, RESOURCE_EXHAUSTED expected) and under_1k (500 bytes,
echoed) are for a server whose receive limit is about 1 KiB; "all" leaves them out.
compressed_unary and compressed_stream send highly compressible 100 KiB
payloads (b'x' * 102400); whether they travel compressed is up to
--compression (check it on the wire, e.g. with ../byte_proxy.py).

Output (stdout): one line per case, ``PASS <name>`` or ``FAIL <name>: <reason>``,
then a last line ``<N> passed, <M> failed``.  Extra notes go to stderr.
Exit status: 0 when every case passed, 1 otherwise, 2 on a usage error.
"""

import argparse
import os
import queue
import sys
import time
import traceback

import grpc

from peerlib import load_stubs, read_file

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO = os.path.normpath(os.path.join(HERE, "..", "..", "proto", "echo.proto"))

SERVICE = "/grpcore.test.Echo"
DETAILS_KEY = "grpc-status-details-bin"
TIMEOUT_S = 20.0  # bound for every call that is not about deadlines
MIB = 1024 * 1024
COMPRESSIBLE = b"x" * 102400  # the compressed_* cases' 100 KiB payload

# --compression values.  None (not NoCompression) for "none" keeps grpcio's
# default behaviour exactly as it was before the flag existed.
COMPRESSION = {
    "none": None,
    "gzip": grpc.Compression.Gzip,
    "deflate": grpc.Compression.Deflate,
}


class CaseFailed(Exception):
    pass


def check(cond, reason):
    if not cond:
        raise CaseFailed(reason)


def expect_rpc_error(fn, *args, **kwargs):
    """Call fn and return the grpc.RpcError it raises; fail if it succeeds."""
    try:
        fn(*args, **kwargs)
    except grpc.RpcError as err:
        return err
    raise CaseFailed("call succeeded but an error status was expected")


def code_name(err):
    code = err.code()
    return code.name if code is not None else "None"


def metadata_value(metadata, key):
    values = [v for k, v in (metadata or ()) if k == key]
    return values[0] if len(values) == 1 else (values or None)


def echo_md(tag):
    """Request metadata for a call named tag: one ASCII and one binary x-echo-*."""
    return [("x-echo-call", tag), ("x-echo-call-bin", b"\x00" + tag.encode() + b"\xff")]


def check_echoed(what, sent, initial, trailing):
    """Each x-echo-K: V sent is back once as x-echo-K in initial, x-trailer-K in trailing."""
    for key, want in sent:
        trailer_key = "x-trailer-" + key[len("x-echo-"):]
        for where, md, k in [("initial", initial, key), ("trailing", trailing, trailer_key)]:
            got = metadata_value(md, k)
            check(got == want, f"{what}: {where} metadata {k} = {got!r}, want {want!r}")


def check_status(what, err, code, message, details):
    """err carries code, message and (if details) grpc-status-details-bin."""
    check(err.code() == code, f"{what}: code {code_name(err)}, want {code.name}")
    check(err.details() == message, f"{what}: message {err.details()!r}, want {message!r}")
    got = metadata_value(err.trailing_metadata(), DETAILS_KEY)
    check(got == (details or None),
          f"{what}: trailing {DETAILS_KEY} = {got!r}, want {details or None!r}")


def triples(responses):
    return [(r.message, r.seq, bytes(r.payload)) for r in responses]


def describe(got, want):
    """Short account of where two lists of (message, seq, payload) part."""
    if len(got) != len(want):
        return f"{len(got)} responses, want {len(want)}; seqs {[g[1] for g in got]}"
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            return (f"response {i}: (message, seq, payload bytes) = "
                    f"({g[0]!r}, {g[1]}, {len(g[2])}), want ({w[0]!r}, {w[1]}, {len(w[2])})"
                    + ("" if g[2] == w[2] or len(g[2]) != len(w[2]) else ", payload differs"))
    return "equal"


class Cases:
    def __init__(self, channel, pb2, pb2_grpc):
        self.channel = channel
        self.pb2 = pb2
        self.stub = pb2_grpc.EchoStub(channel)

    def raw_unary(self, path):
        # None (de)serializers mean "bytes in, bytes out" in grpcio.
        return self.channel.unary_unary(path, request_serializer=None,
                                        response_deserializer=None)

    # -- cases -----------------------------------------------------------

    def unary(self):
        req = self.pb2.EchoRequest
        for name, sent in [
            ("small", req(message="hello", seq=42, payload=b"\x00\x01\x02")),
            ("empty", req()),
            ("negative seq", req(message="neg", seq=-(2 ** 63))),
            ("1 MiB", req(message="big", seq=7,
                          payload=bytes(range(256)) * (MIB // 256))),
        ]:
            resp = self.stub.Unary(sent, timeout=TIMEOUT_S)
            check(resp.message == sent.message,
                  f"{name}: message {resp.message!r} != {sent.message!r}")
            check(resp.seq == sent.seq, f"{name}: seq {resp.seq} != {sent.seq}")
            check(resp.payload == sent.payload,
                  f"{name}: payload differs ({len(resp.payload)} vs {len(sent.payload)} bytes)")

    def metadata(self):
        binary = b"\x00\x01\xfe\xff"
        _, call = self.stub.Unary.with_call(
            self.pb2.EchoRequest(message="md", seq=1),
            metadata=[("x-echo-ascii", "hello"), ("x-echo-data-bin", binary)],
            timeout=TIMEOUT_S)
        initial = call.initial_metadata()
        trailing = call.trailing_metadata()
        for where, md, key, want in [
            ("initial", initial, "x-echo-ascii", "hello"),
            ("initial", initial, "x-echo-data-bin", binary),
            ("trailing", trailing, "x-trailer-ascii", "hello"),
            ("trailing", trailing, "x-trailer-data-bin", binary),
        ]:
            got = metadata_value(md, key)
            check(got == want, f"{where} metadata {key} = {got!r}, want {want!r}")

    def status(self):
        message = "precondition: é ünïcode"
        details = b"\x08\x09detail\x00\xff"
        err = expect_rpc_error(self.stub.Unary, self.pb2.EchoRequest(
            message="fail", fail_code=grpc.StatusCode.FAILED_PRECONDITION.value[0],
            fail_message=message, fail_details=details), timeout=TIMEOUT_S)
        check(err.code() == grpc.StatusCode.FAILED_PRECONDITION,
              f"code {code_name(err)}, want FAILED_PRECONDITION")
        check(err.details() == message, f"message {err.details()!r}, want {message!r}")
        got = metadata_value(err.trailing_metadata(), DETAILS_KEY)
        check(got == details, f"trailing {DETAILS_KEY} = {got!r}, want {details!r}")

    def deadline(self):
        # The handler would answer after 10 s; 5 s leaves a loaded machine room and still
        # tells the 200 ms deadline from the answer.
        start = time.monotonic()
        err = expect_rpc_error(self.stub.Unary,
                               self.pb2.EchoRequest(message="slow", sleep_ms=10000),
                               timeout=0.2)
        elapsed = time.monotonic() - start
        check(err.code() == grpc.StatusCode.DEADLINE_EXCEEDED,
              f"code {code_name(err)}, want DEADLINE_EXCEEDED")
        check(elapsed < 5, f"call took {elapsed:.2f}s, want < 5s")

    def unimplemented(self):
        for path in [f"{SERVICE}/NoSuchMethod", "/grpcore.test.NoSuchService/Unary"]:
            err = expect_rpc_error(self.raw_unary(path), b"", timeout=TIMEOUT_S)
            check(err.code() == grpc.StatusCode.UNIMPLEMENTED,
                  f"{path}: code {code_name(err)}, want UNIMPLEMENTED")

    def undecodable(self):
        err = expect_rpc_error(self.raw_unary(f"{SERVICE}/Unary"), b"\xff\xff\xff",
                               timeout=TIMEOUT_S)
        accepted = (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
        check(err.code() in accepted,
              f"code {code_name(err)}, want INTERNAL or INVALID_ARGUMENT")
        note(f"undecodable: server answered {code_name(err)} ({err.details()!r})")

    def oversized(self):
        payload = b"\x5a" * (4 * MIB + 1)
        err = expect_rpc_error(self.stub.Unary,
                               self.pb2.EchoRequest(message="huge", payload=payload),
                               timeout=TIMEOUT_S)
        check(err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED,
              f"code {code_name(err)}, want RESOURCE_EXHAUSTED")

    def over_1k(self):
        """A 2 KiB request: refused only by a server whose receive limit is ~1 KiB.

        Far under every default limit, so it fails when the server's own limit is
        not applied (unlike oversized, which any default refuses)."""
        err = expect_rpc_error(self.stub.Unary,
                               self.pb2.EchoRequest(message="2k", payload=b"\x5a" * 2048),
                               timeout=TIMEOUT_S)
        check(err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED,
              f"code {code_name(err)}, want RESOURCE_EXHAUSTED")

    def under_1k(self):
        """A 500-byte payload: within a ~1 KiB receive limit, so echoed in full."""
        payload = bytes(range(250)) * 2
        resp = self.stub.Unary(self.pb2.EchoRequest(message="500", payload=payload),
                               timeout=TIMEOUT_S)
        check(resp.payload == payload,
              f"payload differs ({len(resp.payload)} vs {len(payload)} bytes)")

    def client_stream(self):
        req = self.pb2.EchoRequest
        # 50 requests: the joined messages and concatenated payloads prove order.
        sent = [req(message=f"m{i}", seq=i, payload=bytes([i])) for i in range(50)]
        md = echo_md("client_stream")
        resp, call = self.stub.ClientStream.with_call(iter(sent), metadata=md,
                                                      timeout=TIMEOUT_S)
        want = ",".join(f"m{i}" for i in range(50))
        check(resp.message == want, f"message {resp.message!r}, want {want!r}")
        check(resp.seq == 50, f"seq {resp.seq}, want 50")
        check(resp.payload == bytes(range(50)), f"payload {resp.payload!r}, want bytes 0..49")
        check_echoed("ok", md, call.initial_metadata(), call.trailing_metadata())
        # No request at all.
        resp = self.stub.ClientStream(iter([]), timeout=TIMEOUT_S)
        check((resp.message, resp.seq, resp.payload) == ("", 0, b""),
              f"empty stream: response {(resp.message, resp.seq, resp.payload)!r}")
        # A failing request ends the call with its status after the ones before it.
        md = echo_md("client_stream-fail")
        err = expect_rpc_error(self.stub.ClientStream, iter([
            req(message="a"),
            req(message="b", fail_code=grpc.StatusCode.ABORTED.value[0],
                fail_message="stop at b", fail_details=b"\x01cs\x00"),
        ]), metadata=md, timeout=TIMEOUT_S)
        check_status("fail", err, grpc.StatusCode.ABORTED, "stop at b", b"\x01cs\x00")
        check_echoed("fail", md, err.initial_metadata(), err.trailing_metadata())

    def server_stream(self):
        req = self.pb2.EchoRequest
        md = echo_md("server_stream")
        call = self.stub.ServerStream(req(message="s", seq=5, response_size=3),
                                      metadata=md, timeout=TIMEOUT_S)
        got = triples(call)
        want = [("s", i, b"xxx") for i in range(5)]
        check(got == want, f"response_size: {describe(got, want)}")
        check_echoed("ok", md, call.initial_metadata(), call.trailing_metadata())
        # The request's payload is echoed in every response when response_size is 0.
        got = triples(self.stub.ServerStream(req(message="p", seq=3, payload=b"\x00pl\xff"),
                                             timeout=TIMEOUT_S))
        want = [("p", i, b"\x00pl\xff") for i in range(3)]
        check(got == want, f"payload echo: {describe(got, want)}")
        got = triples(self.stub.ServerStream(req(message="none", seq=0), timeout=TIMEOUT_S))
        check(got == [], f"seq=0: {describe(got, [])}")
        # Five responses 0..4, then the status the request asked for.
        md = echo_md("server_stream-fail")
        message = "end of range: é"
        call = self.stub.ServerStream(
            req(message="f", seq=5, payload=b"fp",
                fail_code=grpc.StatusCode.OUT_OF_RANGE.value[0],
                fail_message=message, fail_details=b"\x02ss\x00\xff"),
            metadata=md, timeout=TIMEOUT_S)
        received = []
        try:
            for r in call:
                received.append(r)
        except grpc.RpcError as err:
            check_status("fail", err, grpc.StatusCode.OUT_OF_RANGE, message,
                         b"\x02ss\x00\xff")
            check_echoed("fail", md, err.initial_metadata(), err.trailing_metadata())
        else:
            raise CaseFailed("stream ended OK but OUT_OF_RANGE was expected")
        got, want = triples(received), [("f", i, b"fp") for i in range(5)]
        check(got == want, f"before the status: {describe(got, want)}")

    def bidi(self):
        req = self.pb2.EchoRequest
        md = echo_md("bidi")
        sent = [req(message=f"m{i}", seq=i, payload=bytes([i]) * (i + 1)) for i in range(20)]
        call = self.stub.Bidi(iter(sent), metadata=md, timeout=TIMEOUT_S)
        got = triples(call)
        want = triples(sent)
        check(got == want, f"all at once: {describe(got, want)}")
        check_echoed("ok", md, call.initial_metadata(), call.trailing_metadata())
        self._bidi_ping_pong()
        # Echoes of the requests before the failing one, then its status.
        md = echo_md("bidi-fail")
        call = self.stub.Bidi(iter([
            req(message="m1", seq=1, payload=b"1"),
            req(message="m2", seq=2, payload=b"2"),
            req(message="bad", seq=3, fail_code=grpc.StatusCode.DATA_LOSS.value[0],
                fail_message="mid-stream", fail_details=b"\x03bd"),
            req(message="never", seq=4),
        ]), metadata=md, timeout=TIMEOUT_S)
        received = []
        try:
            for r in call:
                received.append(r)
        except grpc.RpcError as err:
            check_status("fail", err, grpc.StatusCode.DATA_LOSS, "mid-stream", b"\x03bd")
            check_echoed("fail", md, err.initial_metadata(), err.trailing_metadata())
        else:
            raise CaseFailed("stream ended OK but DATA_LOSS was expected")
        got, want = triples(received), [("m1", 1, b"1"), ("m2", 2, b"2")]
        check(got == want, f"before the status: {describe(got, want)}")

    def _bidi_ping_pong(self):
        """Each request is sent only once the echo of the previous one arrived."""
        req = self.pb2.EchoRequest
        echoes = queue.Queue()
        stalled = []

        def requests():
            for i in range(5):
                yield req(message=f"p{i}", seq=i)
                try:
                    echoes.get(timeout=TIMEOUT_S / 2)
                except queue.Empty:
                    stalled.append(i)
                    return  # half-close, so the call still ends

        received = []
        for r in self.stub.Bidi(requests(), timeout=TIMEOUT_S):
            received.append(r)
            echoes.put(r)
        check(not stalled, f"ping-pong: no echo of p{stalled[0] if stalled else ''} "
                             f"within {TIMEOUT_S / 2:.0f}s of sending it")
        got, want = triples(received), [(f"p{i}", i, b"") for i in range(5)]
        check(got == want, f"ping-pong: {describe(got, want)}")

    def compressed_unary(self):
        resp = self.stub.Unary(self.pb2.EchoRequest(message="compressed", seq=1,
                                                    payload=COMPRESSIBLE),
                               timeout=TIMEOUT_S)
        got, want = triples([resp]), [("compressed", 1, COMPRESSIBLE)]
        check(got == want, describe(got, want))

    def compressed_stream(self):
        req = self.pb2.EchoRequest
        sent = [req(message=f"c{i}", seq=i, payload=COMPRESSIBLE) for i in range(3)]
        got = triples(self.stub.Bidi(iter(sent), timeout=TIMEOUT_S))
        want = triples(sent)
        check(got == want, describe(got, want))


CASE_NAMES = ["unary", "metadata", "status", "deadline", "unimplemented",
              "undecodable", "oversized", "over_1k", "under_1k", "client_stream", "server_stream", "bidi",
              "compressed_unary", "compressed_stream"]

# Cases that only pass against a server with a ~1 KiB receive limit.
SMALL_LIMIT_CASES = ["over_1k", "under_1k"]


def note(msg):
    print(f"echo_client: {msg}", file=sys.stderr, flush=True)


def one_line(text):
    return " ".join(str(text).split())


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="grpcio Echo client for grpcore tests",
        epilog="cases: " + " ".join(CASE_NAMES) + " (none or 'all' = every case)")
    parser.add_argument("--proto", default=DEFAULT_PROTO,
                        help=f"path of echo.proto (default: {DEFAULT_PROTO})")
    parser.add_argument("--compression", choices=sorted(COMPRESSION), default="none",
                        help="default compression of requests (default: none)")
    parser.add_argument("--tls-ca", metavar="PEM",
                        help="use TLS, trusting the CA certificates in this file")
    parser.add_argument("--client-cert", metavar="PEM",
                        help="client certificate chain for mutual TLS (needs --client-key)")
    parser.add_argument("--client-key", metavar="PEM", help="private key of --client-cert")
    parser.add_argument("--server-name-override", metavar="NAME",
                        help="check the server certificate against NAME instead of the target's host")
    parser.add_argument("target", metavar="TARGET", help="host:port of the server")
    parser.add_argument("cases", metavar="CASE", nargs="*")
    args = parser.parse_args(argv)
    if bool(args.client_cert) != bool(args.client_key):
        parser.error("--client-cert and --client-key go together")
    if (args.client_cert or args.server_name_override) and not args.tls_ca:
        parser.error("--client-cert and --server-name-override need --tls-ca")

    names = args.cases or ["all"]
    if "all" in names:
        names = [n for n in CASE_NAMES if n not in SMALL_LIMIT_CASES]

    pb2, pb2_grpc = load_stubs(args.proto)
    passed = failed = 0
    if args.tls_ca:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read_file(args.tls_ca),
            private_key=read_file(args.client_key) if args.client_key else None,
            certificate_chain=read_file(args.client_cert) if args.client_cert else None)
        options = []
        if args.server_name_override:
            options.append(("grpc.ssl_target_name_override", args.server_name_override))
        channel = grpc.secure_channel(args.target, credentials, options=options,
                                      compression=COMPRESSION[args.compression])
    else:
        channel = grpc.insecure_channel(args.target,
                                        compression=COMPRESSION[args.compression])
    with channel:
        cases = Cases(channel, pb2, pb2_grpc)
        for name in names:
            if name not in CASE_NAMES:
                reason = f"unknown case (known: {', '.join(CASE_NAMES)})"
            else:
                try:
                    getattr(cases, name)()
                    reason = None
                except CaseFailed as exc:
                    reason = str(exc)
                except grpc.RpcError as err:
                    reason = f"unexpected status {code_name(err)}: {err.details()}"
                except Exception as exc:  # a bug in the case or the stubs
                    traceback.print_exc()
                    reason = f"{type(exc).__name__}: {exc}"
            if reason is None:
                passed += 1
                print(f"PASS {name}", flush=True)
            else:
                failed += 1
                print(f"FAIL {name}: {one_line(reason)}", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
