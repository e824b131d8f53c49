#!/usr/bin/env python3
"""Interop server on Python grpcio: grpc.testing.TestService, written for grpcore from the
gRPC interop test descriptions with grpcio's ordinary API (generic method handlers).

    interop_server.py --port=PORT [--use_tls[=true|false]]
                      [--tls_cert_file=PEM --tls_key_file=PEM]

Listens on [::]:PORT (0 picks a free port), prints ``PORT <n>`` on stdout once listening,
and serves until killed. TLS uses ../../certs/server1.pem and server1.key unless the
files are given.

Server features: EmptyCall, UnaryCall, StreamingInputCall, StreamingOutputCall,
FullDuplexCall, Echo Status, Echo Metadata, ResponseParameters.interval_us,
CompressedResponse (context.set_compression, and disable_next_message_compression for a
response asking compressed=false) and CompressedRequest: the server runs with the core's
per-message decompression off, so each request arrives as it travelled and
interop_common.open_message tells whether it was compressed. UnimplementedCall and
UnimplementedService are not served (grpcio answers UNIMPLEMENTED).
"""

import os
import sys
import time
from concurrent import futures

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as common  # noqa: E402

PROG = "interop_server.py"
empty_pb2, messages_pb2 = common.load_messages()
CODES = {code.value[0]: code for code in grpc.StatusCode}


def echo_metadata(context):
    initial, trailing = [], []
    for key, value in context.invocation_metadata():
        if key == common.ECHO_INITIAL_KEY:
            initial.append((key, value))
        elif key == common.ECHO_TRAILING_KEY:
            trailing.append((key, value))
    if initial:
        context.send_initial_metadata(initial)
    if trailing:
        context.set_trailing_metadata(trailing)


def echo_status(context, status):
    if status.code != 0:
        context.abort(CODES.get(status.code, grpc.StatusCode.UNKNOWN), status.message)


def check_compressed(context, request, compressed):
    if request.HasField("expect_compressed") and request.expect_compressed.value and not compressed:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected a compressed request, got an uncompressed one")


def check_type(context, response_type):
    if response_type != messages_pb2.COMPRESSABLE:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported response_type {response_type}")


def zeros(size):
    return messages_pb2.Payload(type=messages_pb2.COMPRESSABLE, body=bytes(size))


def empty_call(request, context):
    echo_metadata(context)
    return empty_pb2.Empty()


def unary_call(inbound, context):
    request, compressed = inbound
    echo_metadata(context)
    check_compressed(context, request, compressed)
    echo_status(context, request.response_status)
    check_type(context, request.response_type)
    if request.HasField("response_compressed") and request.response_compressed.value:
        context.set_compression(grpc.Compression.Gzip)
    return messages_pb2.SimpleResponse(payload=zeros(request.response_size))


def streaming_input_call(requests, context):
    echo_metadata(context)
    total = 0
    for request, compressed in requests:
        check_compressed(context, request, compressed)
        total += len(request.payload.body)
    return messages_pb2.StreamingInputCallResponse(aggregated_payload_size=total)


def responses(params, context):
    """One response per parameter, after its interval; compressed unless it says false."""
    for p in params:
        if p.interval_us > 0:
            time.sleep(p.interval_us / 1e6)
        if p.HasField("compressed") and not p.compressed.value:
            context.disable_next_message_compression()
        yield messages_pb2.StreamingOutputCallResponse(payload=zeros(p.size))


def wants_compression(params):
    return any(p.HasField("compressed") and p.compressed.value for p in params)


def streaming_output_call(request, context):
    echo_metadata(context)
    check_type(context, request.response_type)
    if wants_compression(request.response_parameters):
        context.set_compression(grpc.Compression.Gzip)
    yield from responses(request.response_parameters, context)
    echo_status(context, request.response_status)


def full_duplex_call(requests, context):
    echo_metadata(context)
    for request in requests:
        echo_status(context, request.response_status)
        check_type(context, request.response_type)
        if wants_compression(request.response_parameters):
            context.set_compression(grpc.Compression.Gzip)
        yield from responses(request.response_parameters, context)


def handlers():
    m = messages_pb2
    ser = common.serializer
    return grpc.method_handlers_generic_handler(
        "grpc.testing.TestService",
        {
            "EmptyCall": grpc.unary_unary_rpc_method_handler(
                empty_call, request_deserializer=common.plain_parser(empty_pb2.Empty), response_serializer=ser
            ),
            "UnaryCall": grpc.unary_unary_rpc_method_handler(
                unary_call, request_deserializer=common.parser(m.SimpleRequest), response_serializer=ser
            ),
            "StreamingInputCall": grpc.stream_unary_rpc_method_handler(
                streaming_input_call,
                request_deserializer=common.parser(m.StreamingInputCallRequest),
                response_serializer=ser,
            ),
            "StreamingOutputCall": grpc.unary_stream_rpc_method_handler(
                streaming_output_call,
                request_deserializer=common.plain_parser(m.StreamingOutputCallRequest),
                response_serializer=ser,
            ),
            "FullDuplexCall": grpc.stream_stream_rpc_method_handler(
                full_duplex_call,
                request_deserializer=common.plain_parser(m.StreamingOutputCallRequest),
                response_serializer=ser,
            ),
        },
    )


def main(argv):
    flags = common.parse_flags(argv, values={"port", "tls_cert_file", "tls_key_file"}, bools={"use_tls"})
    if "port" not in flags:
        raise SystemExit("--port is required")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        handlers=[handlers()],
        options=[common.RAW_RECEIVE_OPTION],
    )
    address = f"[::]:{int(flags['port'])}"
    if flags.get("use_tls"):
        cert = flags.get("tls_cert_file", os.path.join(common.CERTS, "server1.pem"))
        key = flags.get("tls_key_file", os.path.join(common.CERTS, "server1.key"))
        creds = grpc.ssl_server_credentials([(common.read(key), common.read(cert))])
        port = server.add_secure_port(address, creds)
    else:
        if "tls_cert_file" in flags or "tls_key_file" in flags:
            raise SystemExit("--tls_cert_file and --tls_key_file need --use_tls")
        port = server.add_insecure_port(address)
    server.start()
    print(f"PORT {port}", flush=True)
    common.log(PROG, f"grpcio {grpc.__version__} serving on port {port} ({'TLS' if flags.get('use_tls') else 'plaintext'})")
    server.wait_for_termination()


if __name__ == "__main__":
    main(sys.argv[1:])
