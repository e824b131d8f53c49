#!/usr/bin/env python3
"""Reads a server's channelz service with grpcio's own channelz stubs (grpcio-channelz).

Usage: channelz_client.py TARGET

Walks what the service offers: every server and its sockets, every top channel, its
subchannels and their sockets, and asks for ids that do not exist. Prints one JSON object
(the messages in protobuf's JSON form, lowerCamelCase names, 64-bit integers as strings):

  servers, top_channels, end_of_servers, end_of_channels, server_sockets (server id ->
  socket refs), sockets, subchannels (id -> message), channel_by_id (id -> GetChannel),
  server_by_id (id -> GetServer), last_call_age (top channel id -> seconds since its last
  call started, from the decoded Timestamp), not_found (method -> status code name).
"""
import json
import sys
import time

import grpc
from google.protobuf import json_format
from grpc_channelz.v1 import channelz_pb2 as pb
from grpc_channelz.v1 import channelz_pb2_grpc

MISSING = 10**12


def as_dict(message):
    return json_format.MessageToDict(message)


def main(argv):
    target = argv[1]
    out = {"server_sockets": {}, "sockets": {}, "subchannels": {}, "channel_by_id": {}, "server_by_id": {},
           "last_call_age": {}, "not_found": {}}
    with grpc.insecure_channel(target) as channel:
        stub = channelz_pb2_grpc.ChannelzStub(channel)
        servers = stub.GetServers(pb.GetServersRequest(start_server_id=0), timeout=10)
        out["servers"] = [as_dict(s) for s in servers.server]
        out["end_of_servers"] = servers.end
        for server in servers.server:
            sid = server.ref.server_id
            out["server_by_id"][str(sid)] = as_dict(stub.GetServer(pb.GetServerRequest(server_id=sid), timeout=10).server)
            refs = stub.GetServerSockets(pb.GetServerSocketsRequest(server_id=sid, start_socket_id=0), timeout=10)
            out["server_sockets"][str(sid)] = [as_dict(r) for r in refs.socket_ref]
            for ref in refs.socket_ref:
                socket = stub.GetSocket(pb.GetSocketRequest(socket_id=ref.socket_id), timeout=10).socket
                out["sockets"][str(ref.socket_id)] = as_dict(socket)
        top = stub.GetTopChannels(pb.GetTopChannelsRequest(start_channel_id=0), timeout=10)
        out["top_channels"] = [as_dict(c) for c in top.channel]
        out["end_of_channels"] = top.end
        now = time.time()
        for top_channel in top.channel:
            cid = top_channel.ref.channel_id
            out["channel_by_id"][str(cid)] = as_dict(stub.GetChannel(pb.GetChannelRequest(channel_id=cid), timeout=10).channel)
            started = top_channel.data.last_call_started_timestamp
            out["last_call_age"][str(cid)] = now - (started.seconds + started.nanos / 1e9)
            for sub_ref in top_channel.subchannel_ref:
                sub = stub.GetSubchannel(pb.GetSubchannelRequest(subchannel_id=sub_ref.subchannel_id), timeout=10).subchannel
                out["subchannels"][str(sub_ref.subchannel_id)] = as_dict(sub)
                for ref in sub.socket_ref:
                    socket = stub.GetSocket(pb.GetSocketRequest(socket_id=ref.socket_id), timeout=10).socket
                    out["sockets"][str(ref.socket_id)] = as_dict(socket)
        lookups = {
            "GetServer": lambda: stub.GetServer(pb.GetServerRequest(server_id=MISSING), timeout=10),
            "GetServerSockets": lambda: stub.GetServerSockets(pb.GetServerSocketsRequest(server_id=MISSING), timeout=10),
            "GetChannel": lambda: stub.GetChannel(pb.GetChannelRequest(channel_id=MISSING), timeout=10),
            "GetSubchannel": lambda: stub.GetSubchannel(pb.GetSubchannelRequest(subchannel_id=MISSING), timeout=10),
            "GetSocket": lambda: stub.GetSocket(pb.GetSocketRequest(socket_id=MISSING), timeout=10),
            "GetChannel(-1)": lambda: stub.GetChannel(pb.GetChannelRequest(channel_id=-1), timeout=10),
        }
        for name, call in lookups.items():
            try:
                call()
                out["not_found"][name] = "OK"
            except grpc.RpcError as e:
                out["not_found"][name] = e.code().name
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
