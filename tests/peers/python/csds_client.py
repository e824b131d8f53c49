#!/usr/bin/env python3
"""A CSDS client: asks TARGET for its xDS client status and prints what it says.

Usage:
    csds_client.py TARGET
    csds_client.py --decode < CLIENT_CONFIG

With --decode, no call: stdin holds one serialized envoy.service.status.v3.ClientConfig
(as grpc_dump_xds_configs gives it), and the output is the same JSON line as for a
response holding it.

Calls envoy.service.status.v3.ClientStatusDiscoveryService/FetchClientStatus
(stubs from the xds-protos package) with a 5 s deadline and prints one JSON line on
stdout: {"node": "<node id>" or null, "resources": [[type_url, name, client_status,
version], ...]} with every resource of every ClientConfig (the generic_xds_configs
form, which gRPC 1.51 fills), and "client_config": the first ClientConfig in
protobuf's own JSON mapping (json_format.MessageToDict) with the resources themselves
(the Any fields xds_config and error_state.failed_configuration) cleared, or null: what
grpcore's client_config_json must agree with.  Exits non-zero if the call fails.
"""

import peerlib  # noqa: F401

import json
import sys

import grpc
from google.protobuf import json_format

from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc


def main():
    if sys.argv[1] == "--decode":
        response = csds_pb2.ClientStatusResponse()
        response.config.add().ParseFromString(sys.stdin.buffer.read())
    else:
        with grpc.insecure_channel(sys.argv[1]) as channel:
            stub = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(channel)
            response = stub.FetchClientStatus(csds_pb2.ClientStatusRequest(), timeout=5)
    node, resources = None, []
    for config in response.config:
        node = config.node.id
        for r in config.generic_xds_configs:
            status = r.DESCRIPTOR.fields_by_name["client_status"].enum_type.values_by_number[r.client_status].name
            resources.append([r.type_url, r.name, status, r.version_info])
    envelope = None
    if response.config:
        config = response.config[0]
        for r in config.generic_xds_configs:
            r.ClearField("xds_config")
            r.error_state.ClearField("failed_configuration")
            if not r.error_state.ListFields():
                r.ClearField("error_state")
        envelope = json_format.MessageToDict(config)
    print(json.dumps({"node": node, "resources": resources, "client_config": envelope}), flush=True)


if __name__ == "__main__":
    main()
