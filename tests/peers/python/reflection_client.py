"""grpcio's reflection client against a server: learns routeguide.RouteGuide by reflection
alone (grpcio-reflection's ProtoReflectionDescriptorDatabase, which speaks
grpc.reflection.v1alpha), builds its types in a protobuf DescriptorPool, calls GetFeature
with them, and asks both reflection versions about a symbol nobody declared (v1 with
message classes the pool built from the server's own description of v1).

    python3 reflection_client.py HOST:PORT LATITUDE LONGITUDE

Prints one JSON object with what it learned (examples/tests/reflection.rs checks it).
Every call has a deadline, so it cannot hang.
"""
import json
import sys

import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

TIMEOUT = 10
UNKNOWN = "no.such.Thing"


def error_codes(responses):
    """The error_response codes of `responses` (0 where there is no error)."""
    return [r.error_response.error_code for r in responses]


def main():
    target, latitude, longitude = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    out = {}
    with grpc.insecure_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
        database = ProtoReflectionDescriptorDatabase(channel)
        out["services"] = sorted(database.get_services())
        pool = DescriptorPool(database)

        service = pool.FindServiceByName("routeguide.RouteGuide")
        out["methods"] = {
            m.name: [m.input_type.full_name, m.output_type.full_name] for m in service.methods
        }
        point = pool.FindMessageTypeByName("routeguide.Point")
        out["point_fields"] = [[f.name, f.number] for f in point.fields]
        out["point_file"] = pool.FindFileContainingSymbol("routeguide.Point").name
        try:
            pool.FindMessageTypeByName(UNKNOWN)
            out["unknown_in_pool"] = "found"
        except KeyError:
            out["unknown_in_pool"] = "KeyError"

        # A call made with classes built from the reflected descriptors only.
        Point = message_factory.GetMessageClass(point)
        Feature = message_factory.GetMessageClass(pool.FindMessageTypeByName("routeguide.Feature"))
        get_feature = channel.unary_unary(
            "/routeguide.RouteGuide/GetFeature",
            request_serializer=Point.SerializeToString,
            response_deserializer=Feature.FromString,
        )
        feature = get_feature(Point(latitude=latitude, longitude=longitude), timeout=TIMEOUT)
        out["feature"] = json_format.MessageToDict(feature)

        # v1alpha, with grpcio-reflection's own generated messages.
        alpha = channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=v1alpha_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=v1alpha_pb2.ServerReflectionResponse.FromString,
        )
        answers = list(
            alpha(
                iter([v1alpha_pb2.ServerReflectionRequest(file_containing_symbol=UNKNOWN)]),
                timeout=TIMEOUT,
            )
        )
        out["v1alpha_unknown"] = error_codes(answers)

        # v1, with classes the pool built from what the server says v1 is.
        Request = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest")
        )
        Response = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionResponse")
        )
        v1 = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=Request.SerializeToString,
            response_deserializer=Response.FromString,
        )
        answers = list(
            v1(
                iter(
                    [
                        Request(file_containing_symbol=UNKNOWN),
                        Request(file_containing_symbol="routeguide.RouteGuide.GetFeature"),
                    ]
                ),
                timeout=TIMEOUT,
            )
        )
        out["v1_unknown"] = error_codes(answers[:1])
        out["v1_method_files"] = len(answers[1].file_descriptor_response.file_descriptor_proto)
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
