#!/usr/bin/env python3
"""Rich error details (google.rpc.Status in grpc-status-details-bin) through grpcio-status.

Usage:
  rich_status.py server          serves /grpcore.test.Rich/Fail (raw bytes), which fails with
                                 INVALID_ARGUMENT "from python" and three details (BadRequest,
                                 ErrorInfo, RetryInfo), written by grpc_status.rpc_status;
                                 prints ``PORT <n>`` and runs until stdin closes.
  rich_status.py client TARGET PATH
                                 calls PATH with an empty message and prints, as one JSON
                                 object, the status rpc_status.from_call decoded: code, message
                                 and each detail unpacked with its standard type.
"""
import json
import sys
import threading
from concurrent import futures

import grpc
from google.protobuf import any_pb2, duration_pb2, json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

import peerlib

STANDARD = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
        error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo, error_details_pb2.DebugInfo,
        error_details_pb2.QuotaFailure, error_details_pb2.PreconditionFailure, error_details_pb2.BadRequest,
        error_details_pb2.RequestInfo, error_details_pb2.ResourceInfo, error_details_pb2.Help,
        error_details_pb2.LocalizedMessage,
    )
}


def packed(message):
    any_message = any_pb2.Any()
    any_message.Pack(message)
    return any_message


def fail(request, context):
    details = [
        packed(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="name", description="must not be empty")])),
        packed(error_details_pb2.ErrorInfo(reason="PY_REASON", domain="grpcio.test", metadata={"k": "v"})),
        packed(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2, nanos=500))),
    ]
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="from python", details=details)
    context.abort_with_status(rpc_status.to_status(status))


def serve():
    raw = dict(request_deserializer=lambda b: b, response_serializer=lambda b: b)
    handler = grpc.method_handlers_generic_handler(
        "grpcore.test.Rich", {"Fail": grpc.unary_unary_rpc_method_handler(fail, **raw)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    stop = threading.Event()
    peerlib.watch_stdin(stop)
    peerlib.watch_parent(stop)
    stop.wait()
    server.stop(0)
    return 0


def client(target, path):
    raw = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with grpc.insecure_channel(target) as channel:
        try:
            channel.unary_unary(path, **raw)(b"", timeout=10)
            print(json.dumps({"ok": True}))
            return 0
        except grpc.RpcError as call:
            status = rpc_status.from_call(call)
    if status is None:
        print(json.dumps({"code": call.code().name, "details": None}))
        return 0
    details = []
    for any_message in status.details:
        name = any_message.TypeName()
        cls = STANDARD.get(name)
        if cls is None:
            details.append({"type": name, "bytes": list(any_message.value)})
            continue
        message = cls()
        any_message.Unpack(message)
        details.append({"type": name, "value": json_format.MessageToDict(message, preserving_proto_field_name=True)})
    print(json.dumps({"code": status.code, "message": status.message, "details": details}))
    return 0


def main(argv):
    if argv[1:2] == ["server"]:
        return serve()
    if argv[1:2] == ["client"] and len(argv) == 4:
        return client(argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
