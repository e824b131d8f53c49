#!/usr/bin/env python3
"""Interop client on Python grpcio: the client cases of the gRPC interop test
descriptions, written for grpcore with grpcio's ordinary API (multi-callables on a channel).

    interop_client.py --server_port=PORT [--server_host=HOST] [--server_host_override=NAME]
                      [--use_tls[=true|false]] [--use_test_ca[=true|false]] [--ca_file=PEM]
                      --test_case=NAME[,NAME...]|all

Exits 0 when every case passed, 1 when one failed.

Compression: grpcio compresses per call (compression=), not per message, so in
client_compressed_streaming the second message (expect_compressed false) goes compressed
too; the server accepts that, as expect_compressed false asks for nothing. Whether a
response arrived compressed (server_compressed_*) is seen on a second channel with the
core's per-message decompression off (interop_common.open_message).
"""

import os
import queue
import sys
import time

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as common  # noqa: E402

PROG = "interop_client.py"
empty_pb2, messages_pb2 = common.load_messages()
m = messages_pb2

CASES = [
    "empty_unary",
    "large_unary",
    "client_compressed_unary",
    "server_compressed_unary",
    "client_streaming",
    "client_compressed_streaming",
    "server_streaming",
    "server_compressed_streaming",
    "ping_pong",
    "empty_stream",
    "custom_metadata",
    "status_code_and_message",
    "special_status_message",
    "unimplemented_method",
    "unimplemented_service",
    "cancel_after_begin",
    "cancel_after_first_response",
    "timeout_on_sleeping_server",
]

SPECIAL_STATUS_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"
ECHO_INITIAL_VALUE = "test_initial_metadata_value"
ECHO_TRAILING_VALUE = b"\xab\xab\xab"


class CaseFailed(Exception):
    pass


def ensure(cond, msg):
    if not cond:
        raise CaseFailed(msg)


def zeros(size):
    return m.Payload(type=m.COMPRESSABLE, body=bytes(size))


def check_payload(payload, size, what):
    ensure(len(payload.body) == size, f"{what}: payload of {len(payload.body)} bytes, expected {size}")
    ensure(payload.body == bytes(size), f"{what}: payload is not all zeros")


def expect_error(fn, code, message=None, what="call"):
    try:
        fn()
    except grpc.RpcError as e:
        ensure(e.code() == code, f"{what}: ended {e.code()} {e.details()!r}, expected {code}")
        if message is not None:
            ensure(e.details() == message, f"{what}: message {e.details()!r}, expected {message!r}")
        return
    raise CaseFailed(f"{what}: succeeded, expected {code}")


class Pipe:
    """A request iterator fed from another thread; close() ends it."""

    _END = object()

    def __init__(self):
        self._queue = queue.Queue()

    def add(self, item):
        self._queue.put(item)

    def close(self):
        self._queue.put(self._END)

    def __iter__(self):
        return self

    def __next__(self):
        item = self._queue.get()
        if item is self._END:
            raise StopIteration
        return item


class Stubs:
    def __init__(self, channel):
        p, ser = common.plain_parser, common.serializer
        base = "/grpc.testing.TestService/"
        self.empty_call = channel.unary_unary(base + "EmptyCall", ser, p(empty_pb2.Empty))
        self.unary_call = channel.unary_unary(base + "UnaryCall", ser, common.parser(m.SimpleResponse))
        self.streaming_input_call = channel.stream_unary(
            base + "StreamingInputCall", ser, p(m.StreamingInputCallResponse)
        )
        self.streaming_output_call = channel.unary_stream(
            base + "StreamingOutputCall", ser, common.parser(m.StreamingOutputCallResponse)
        )
        self.full_duplex_call = channel.stream_stream(
            base + "FullDuplexCall", ser, common.parser(m.StreamingOutputCallResponse)
        )
        self.unimplemented_method = channel.unary_unary(base + "UnimplementedCall", ser, p(empty_pb2.Empty))
        self.unimplemented_service = channel.unary_unary(
            "/grpc.testing.UnimplementedService/UnimplementedCall", ser, p(empty_pb2.Empty)
        )


def large_request(**fields):
    return m.SimpleRequest(response_size=314159, payload=zeros(271828), **fields)


def empty_unary(s, raw):
    ensure(s.empty_call(empty_pb2.Empty()) == empty_pb2.Empty(), "EmptyCall answered a non-empty message")


def large_unary(s, raw):
    response, _ = s.unary_call(large_request())
    check_payload(response.payload, 314159, "UnaryCall")


def client_compressed_unary(s, raw):
    probe = large_request(expect_compressed=m.BoolValue(value=True))
    expect_error(lambda: s.unary_call(probe), grpc.StatusCode.INVALID_ARGUMENT, what="uncompressed probe")
    response, _ = s.unary_call(probe, compression=grpc.Compression.Gzip)
    check_payload(response.payload, 314159, "compressed UnaryCall")
    response, _ = s.unary_call(large_request(expect_compressed=m.BoolValue(value=False)))
    check_payload(response.payload, 314159, "uncompressed UnaryCall")


def server_compressed_unary(s, raw):
    for compressed in (True, False):
        req = large_request(response_compressed=m.BoolValue(value=compressed))
        response, was_compressed = raw.unary_call(req)
        ensure(was_compressed == compressed, f"response_compressed {compressed}: arrived compressed={was_compressed}")
        check_payload(response.payload, 314159, f"response_compressed {compressed}")
        response, _ = s.unary_call(req)
        check_payload(response.payload, 314159, f"response_compressed {compressed}")


def client_streaming(s, raw):
    sizes = (27182, 8, 1828, 45904)
    response = s.streaming_input_call(iter([m.StreamingInputCallRequest(payload=zeros(n)) for n in sizes]))
    ensure(response.aggregated_payload_size == 74922, f"aggregated_payload_size {response.aggregated_payload_size}")


def client_compressed_streaming(s, raw):
    probe = m.StreamingInputCallRequest(payload=zeros(27182), expect_compressed=m.BoolValue(value=True))
    expect_error(
        lambda: s.streaming_input_call(iter([probe])), grpc.StatusCode.INVALID_ARGUMENT, what="uncompressed probe"
    )
    second = m.StreamingInputCallRequest(payload=zeros(45904), expect_compressed=m.BoolValue(value=False))
    response = s.streaming_input_call(iter([probe, second]), compression=grpc.Compression.Gzip)
    ensure(response.aggregated_payload_size == 73086, f"aggregated_payload_size {response.aggregated_payload_size}")


def server_streaming(s, raw):
    sizes = [31415, 9, 2653, 58979]
    req = m.StreamingOutputCallRequest(response_parameters=[m.ResponseParameters(size=n) for n in sizes])
    got = []
    for response, _ in s.streaming_output_call(req):
        check_payload(response.payload, len(response.payload.body), "a response")
        got.append(len(response.payload.body))
    ensure(got == sizes, f"response sizes {got}, expected {sizes}")


def server_compressed_streaming(s, raw):
    req = m.StreamingOutputCallRequest(
        response_parameters=[
            m.ResponseParameters(size=31415, compressed=m.BoolValue(value=True)),
            m.ResponseParameters(size=92653, compressed=m.BoolValue(value=False)),
        ]
    )
    for stubs, check_flags in ((raw, True), (s, False)):
        got = [(len(r.payload.body), c) for r, c in stubs.streaming_output_call(req)]
        ensure([g[0] for g in got] == [31415, 92653], f"response sizes {[g[0] for g in got]}")
        if check_flags:
            ensure([g[1] for g in got] == [True, False], f"responses arrived compressed {[g[1] for g in got]}")


def duplex_request(response_size, payload_size):
    return m.StreamingOutputCallRequest(
        response_parameters=[m.ResponseParameters(size=response_size)], payload=zeros(payload_size)
    )


def ping_pong(s, raw):
    pipe = Pipe()
    responses = s.full_duplex_call(pipe)
    for response_size, payload_size in ((31415, 27182), (9, 8), (2653, 1828), (58979, 45904)):
        pipe.add(duplex_request(response_size, payload_size))
        response, _ = next(responses)
        check_payload(response.payload, response_size, "a response")
    pipe.close()
    ensure(next(responses, None) is None, "a fifth response arrived")


def empty_stream(s, raw):
    ensure(list(s.full_duplex_call(iter([]))) == [], "a response arrived on an empty stream")


def check_echoed(initial, trailing, what):
    initial, trailing = dict(initial), dict(trailing)
    got = initial.get(common.ECHO_INITIAL_KEY)
    ensure(got == ECHO_INITIAL_VALUE, f"{what}: initial metadata {common.ECHO_INITIAL_KEY} = {got!r}")
    got = trailing.get(common.ECHO_TRAILING_KEY)
    ensure(got == ECHO_TRAILING_VALUE, f"{what}: trailing metadata {common.ECHO_TRAILING_KEY} = {got!r}")


def custom_metadata(s, raw):
    md = ((common.ECHO_INITIAL_KEY, ECHO_INITIAL_VALUE), (common.ECHO_TRAILING_KEY, ECHO_TRAILING_VALUE))
    (response, _), call = s.unary_call.with_call(large_request(), metadata=md)
    check_payload(response.payload, 314159, "UnaryCall")
    check_echoed(call.initial_metadata(), call.trailing_metadata(), "UnaryCall")
    call = s.full_duplex_call(iter([duplex_request(314159, 271828)]), metadata=md)
    responses = list(call)
    ensure(len(responses) == 1, f"FullDuplexCall: {len(responses)} responses")
    check_payload(responses[0][0].payload, 314159, "FullDuplexCall")
    check_echoed(call.initial_metadata(), call.trailing_metadata(), "FullDuplexCall")


def echo_status_calls(s, message, duplex_too):
    status = m.EchoStatus(code=2, message=message)
    expect_error(
        lambda: s.unary_call(m.SimpleRequest(response_status=status)),
        grpc.StatusCode.UNKNOWN,
        message,
        "UnaryCall",
    )
    if duplex_too:
        req = m.StreamingOutputCallRequest(response_status=status)
        expect_error(
            lambda: list(s.full_duplex_call(iter([req]))), grpc.StatusCode.UNKNOWN, message, "FullDuplexCall"
        )


def status_code_and_message(s, raw):
    echo_status_calls(s, "test status message", True)


def special_status_message(s, raw):
    echo_status_calls(s, SPECIAL_STATUS_MESSAGE, False)


def unimplemented_method(s, raw):
    expect_error(lambda: s.unimplemented_method(empty_pb2.Empty()), grpc.StatusCode.UNIMPLEMENTED)


def unimplemented_service(s, raw):
    expect_error(lambda: s.unimplemented_service(empty_pb2.Empty()), grpc.StatusCode.UNIMPLEMENTED)


def cancel_after_begin(s, raw):
    pipe = Pipe()  # never fed: the call has begun, no message sent
    future = s.streaming_input_call.future(pipe)
    future.cancel()
    ensure(future.cancelled(), "the call is not cancelled")
    ensure(future.code() == grpc.StatusCode.CANCELLED, f"ended {future.code()}, expected CANCELLED")
    pipe.close()


def cancel_after_first_response(s, raw):
    pipe = Pipe()
    call = s.full_duplex_call(pipe)
    pipe.add(duplex_request(31415, 27182))
    response, _ = next(call)
    check_payload(response.payload, 31415, "the first response")
    call.cancel()
    pipe.close()
    expect_error(lambda: next(call), grpc.StatusCode.CANCELLED, what="FullDuplexCall after cancel")


def timeout_on_sleeping_server(s, raw):
    pipe = Pipe()
    call = s.full_duplex_call(pipe, timeout=0.001)
    pipe.add(m.StreamingOutputCallRequest(payload=zeros(27182)))
    expect_error(lambda: next(call), grpc.StatusCode.DEADLINE_EXCEEDED, what="FullDuplexCall with a 1 ms timeout")
    pipe.close()


def make_channel(flags, extra_options):
    target = f"{flags.get('server_host', 'localhost')}:{flags['server_port']}"
    options = list(extra_options)
    if flags.get("use_tls"):
        roots = None
        if "ca_file" in flags:
            roots = common.read(flags["ca_file"])
        elif flags.get("use_test_ca"):
            roots = common.read(os.path.join(common.CERTS, "ca.pem"))
        if "server_host_override" in flags:
            options.append(("grpc.ssl_target_name_override", flags["server_host_override"]))
        return grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=roots), options=options)
    if flags.get("use_test_ca") or "ca_file" in flags:
        raise SystemExit("--use_test_ca and --ca_file need --use_tls")
    return grpc.insecure_channel(target, options=options)


def main(argv):
    flags = common.parse_flags(
        argv,
        values={"server_host", "server_port", "server_host_override", "test_case", "ca_file"},
        bools={"use_tls", "use_test_ca"},
    )
    for required in ("server_port", "test_case"):
        if required not in flags:
            raise SystemExit(f"--{required} is required")
    cases = CASES if flags["test_case"] == "all" else flags["test_case"].split(",")
    for case in cases:
        if case not in CASES:
            raise SystemExit(f"unknown test case {case!r}; known: {', '.join(CASES)}")
    stubs = Stubs(make_channel(flags, []))
    raw = Stubs(make_channel(flags, [common.RAW_RECEIVE_OPTION]))
    ok = True
    for case in cases:
        start = time.monotonic()
        try:
            globals()[case](stubs, raw)
            common.log(PROG, f"{case}: passed ({(time.monotonic() - start) * 1000:.0f} ms)")
        except (CaseFailed, grpc.RpcError) as e:
            ok = False
            detail = f"{e.code()} {e.details()!r}" if isinstance(e, grpc.RpcError) else str(e)
            common.log(PROG, f"{case}: FAILED: {detail}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main(sys.argv[1:])
