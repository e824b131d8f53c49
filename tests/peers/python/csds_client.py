#!/usr/bin/env python3
"""A CSDS client: asks TARGET for its xDS client status and prints what it says.

Usage:
    csds_client.py TARGET

Calls envoy.service.status.v3.ClientStatusDiscoveryService/FetchClientStatus
(stubs from the xds-protos package) with a 5 s deadline and prints one JSON line on
stdout: {"node": "<node id>" or null, "resources": [[type_url, name, client_status,
version], ...]} with every resource of every ClientConfig (the generic_xds_configs
form, which gRPC 1.51 fills).  Exits non-zero if the call fails.
"""

import peerlib  # noqa: F401

import json
import sys

import grpc

from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc


def main():
    target = sys.argv[1]
    with grpc.insecure_channel(target) as channel:
        stub = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(channel)
        response = stub.FetchClientStatus(csds_pb2.ClientStatusRequest(), timeout=5)
    node, resources = None, []
    for config in response.config:
        node = config.node.id
        for r in config.generic_xds_configs:
            status = r.DESCRIPTOR.fields_by_name["client_status"].enum_type.values_by_number[r.client_status].name
            resources.append([r.type_url, r.name, status, r.version_info])
    print(json.dumps({"node": node, "resources": resources}), flush=True)


if __name__ == "__main__":
    main()
