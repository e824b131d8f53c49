#!/usr/bin/env python3
"""grpcio peer: a client that checks a grpcore.test.Echo server.

The Rust integration tests run this against a grpcore server implementing the
Echo semantics described in echo_server.py, so that grpcore's server is
checked against a client we did not write.

Usage:
    echo_client.py [--proto PATH] TARGET [CASE...]

TARGET is host:port (e.g. 127.0.0.1:50051), reached with an insecure channel.
CASE is one or more case names (no CASE, or "all", runs every case):
    unary metadata status deadline unimplemented undecodable oversized
    client_stream server_stream bidi

Output (stdout): one line per case, ``PASS <name>`` or ``FAIL <name>: <reason>``,
then a last line ``<N> passed, <M> failed``.  Extra notes go to stderr.
Exit status: 0 when every case passed, 1 otherwise, 2 on a usage error.
"""

import argparse
import importlib
import os
import shutil
import sys
import tempfile
import time
import traceback

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO = os.path.normpath(os.path.join(HERE, "..", "..", "proto", "echo.proto"))

SERVICE = "/grpcore.test.Echo"
DETAILS_KEY = "grpc-status-details-bin"
TIMEOUT_S = 20.0  # bound for every call that is not about deadlines
MIB = 1024 * 1024


class CaseFailed(Exception):
    pass


def check(cond, reason):
    if not cond:
        raise CaseFailed(reason)


def load_stubs(proto_path):
    """Compile proto_path with grpc_tools.protoc and import the modules."""
    from grpc_tools import protoc

    proto_dir, proto_file = os.path.split(os.path.abspath(proto_path))
    module = os.path.splitext(proto_file)[0]
    out_dir = tempfile.mkdtemp(prefix="grpcore-echo-stubs-")
    try:
        include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
        rc = protoc.main([
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"-I{include}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            proto_file,
        ])
        if rc != 0:
            raise RuntimeError(f"protoc failed on {proto_path} (exit {rc})")
        sys.path.insert(0, out_dir)
        dont_write = sys.dont_write_bytecode
        sys.dont_write_bytecode = True
        try:
            pb2 = importlib.import_module(f"{module}_pb2")
            pb2_grpc = importlib.import_module(f"{module}_pb2_grpc")
        finally:
            sys.dont_write_bytecode = dont_write
            sys.path.remove(out_dir)
        return pb2, pb2_grpc
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


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
        start = time.monotonic()
        err = expect_rpc_error(self.stub.Unary,
                               self.pb2.EchoRequest(message="slow", sleep_ms=2000),
                               timeout=0.2)
        elapsed = time.monotonic() - start
        check(err.code() == grpc.StatusCode.DEADLINE_EXCEEDED,
              f"code {code_name(err)}, want DEADLINE_EXCEEDED")
        check(elapsed < 1.5, f"call took {elapsed:.2f}s, want < 1.5s")

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

    def client_stream(self):
        req = self.pb2.EchoRequest
        resp = self.stub.ClientStream(
            iter([req(message=m, payload=m.encode()) for m in ("a", "b", "c")]),
            timeout=TIMEOUT_S)
        check(resp.message == "a,b,c", f"message {resp.message!r}, want 'a,b,c'")
        check(resp.seq == 3, f"seq {resp.seq}, want 3")
        check(resp.payload == b"abc", f"payload {resp.payload!r}, want b'abc'")
        err = expect_rpc_error(self.stub.ClientStream, iter([
            req(message="a"),
            req(message="b", fail_code=grpc.StatusCode.ABORTED.value[0],
                fail_message="stop at b"),
        ]), timeout=TIMEOUT_S)
        check(err.code() == grpc.StatusCode.ABORTED, f"code {code_name(err)}, want ABORTED")
        check(err.details() == "stop at b", f"message {err.details()!r}")

    def server_stream(self):
        req = self.pb2.EchoRequest
        got = list(self.stub.ServerStream(req(message="s", seq=5, response_size=3),
                                          timeout=TIMEOUT_S))
        check([(r.message, r.seq, r.payload) for r in got]
              == [("s", i, b"xxx") for i in range(5)],
              f"responses {[(r.message, r.seq, r.payload) for r in got]!r}")
        call = self.stub.ServerStream(
            req(message="f", seq=2, fail_code=grpc.StatusCode.OUT_OF_RANGE.value[0],
                fail_message="end of range"), timeout=TIMEOUT_S)
        received = []
        try:
            for r in call:
                received.append(r.seq)
        except grpc.RpcError as err:
            check(err.code() == grpc.StatusCode.OUT_OF_RANGE,
                  f"code {code_name(err)}, want OUT_OF_RANGE")
        else:
            raise CaseFailed("stream ended OK but OUT_OF_RANGE was expected")
        check(received == [0, 1], f"received seqs {received}, want [0, 1]")

    def bidi(self):
        req = self.pb2.EchoRequest
        sent = [req(message=f"m{i}", seq=i, payload=bytes([i])) for i in range(4)]
        got = list(self.stub.Bidi(iter(sent), timeout=TIMEOUT_S))
        check([(r.message, r.seq, r.payload) for r in got]
              == [(s.message, s.seq, s.payload) for s in sent],
              f"responses {[(r.message, r.seq) for r in got]!r}")
        call = self.stub.Bidi(iter([
            req(message="ok", seq=1),
            req(message="bad", seq=2, fail_code=grpc.StatusCode.DATA_LOSS.value[0],
                fail_message="mid-stream"),
            req(message="never", seq=3),
        ]), timeout=TIMEOUT_S)
        received = []
        try:
            for r in call:
                received.append(r.seq)
        except grpc.RpcError as err:
            check(err.code() == grpc.StatusCode.DATA_LOSS,
                  f"code {code_name(err)}, want DATA_LOSS")
            check(err.details() == "mid-stream", f"message {err.details()!r}")
        else:
            raise CaseFailed("stream ended OK but DATA_LOSS was expected")
        check(received == [1], f"received seqs {received}, want [1]")


CASE_NAMES = ["unary", "metadata", "status", "deadline", "unimplemented",
              "undecodable", "oversized", "client_stream", "server_stream", "bidi"]


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
    parser.add_argument("target", metavar="TARGET", help="host:port of the server")
    parser.add_argument("cases", metavar="CASE", nargs="*")
    args = parser.parse_args(argv)

    names = args.cases or ["all"]
    if "all" in names:
        names = CASE_NAMES

    pb2, pb2_grpc = load_stubs(args.proto)
    passed = failed = 0
    with grpc.insecure_channel(args.target) as channel:
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
