#!/usr/bin/env python3
"""grpcio peer: a routeguide.RouteGuide client that makes the same calls as
examples/route_guide/client.rs and prints the same lines, so that its output
against any RouteGuide server can be compared with the Rust client's.

Usage:
    route_guide_client.py HOST:PORT [--db PATH] [--proto PATH]

Exits 0 when every call succeeded, 1 otherwise (the error on stderr).
"""

import argparse
import sys

import grpc

import route_guide_common as common

TIMEOUT_S = 10


def show(p):
    return f"{p.latitude},{p.longitude}"


def quoted(s):
    # Rust's {:?} for the plain ASCII names and messages used here.
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run(target, pb2, pb2_grpc, features):
    def at(i):
        return features[i].location

    def point(lat, lon):
        return pb2.Point(latitude=lat, longitude=lon)

    with grpc.insecure_channel(target) as channel:
        stub = pb2_grpc.RouteGuideStub(channel)

        for p in [at(0), at(3), point(0, 0)]:
            feature = stub.GetFeature(p, timeout=TIMEOUT_S, wait_for_ready=True)
            if feature.name:
                print(f"get_feature {show(p)}: {quoted(feature.name)}")
            else:
                print(f"get_feature {show(p)}: no feature")

        rect = pb2.Rectangle(lo=point(400000000, -750000000), hi=point(405000000, -745000000))
        print(f"list_features {show(rect.lo)} to {show(rect.hi)}:")
        count = 0
        for feature in stub.ListFeatures(rect, timeout=TIMEOUT_S):
            print(f"  {quoted(feature.name)} at {show(feature.location)}")
            count += 1
        print(f"list_features: {count} features")

        route = [at(0), at(5), point(400500000, -745000000), at(10), at(3), at(20),
                 point(401000000, -749000000), at(30)]
        summary = stub.RecordRoute(iter(route), timeout=TIMEOUT_S)
        print(f"record_route: sent {len(route)} points")
        print(f"record_route: point_count={summary.point_count} "
              f"feature_count={summary.feature_count} distance={summary.distance}")

        notes = [
            ("First message", point(0, 0)),
            ("Second message", point(0, 1)),
            ("Third message", point(1, 0)),
            ("Fourth message", point(0, 0)),
            ("Fifth message", point(0, 1)),
            ("Sixth message", point(0, 0)),
        ]
        requests = [pb2.RouteNote(location=loc, message=msg) for msg, loc in notes]
        for note in stub.RouteChat(iter(requests), timeout=TIMEOUT_S):
            print(f"route_chat: got {quoted(note.message)} at {show(note.location)}")
        print("route_chat: done")


def main(argv=None):
    parser = argparse.ArgumentParser(description="grpcio RouteGuide client for grpcore tests")
    parser.add_argument("target", help="HOST:PORT of a RouteGuide server")
    parser.add_argument("--db", default=common.DEFAULT_DB, help="feature database (JSON)")
    parser.add_argument("--proto", default=common.DEFAULT_PROTO, help="route_guide.proto")
    args = parser.parse_args(argv)
    pb2, pb2_grpc = common.load_stubs(args.proto)
    features = common.load_features(pb2, args.db)
    try:
        run(args.target, pb2, pb2_grpc, features)
    except grpc.RpcError as e:
        print(f"route_guide_client: {e.code()}: {e.details()}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
