"""Shared by route_guide_server.py and route_guide_client.py: stub generation,
the feature database and the geometry, matching examples/route_guide in Rust.

The stubs are generated at start-up from examples/route_guide/route_guide.proto with
grpc_tools.protoc into a temporary directory, so nothing generated is kept.
"""

import json
import math
import os

import peerlib

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "..", "examples", "route_guide"))
DEFAULT_PROTO = os.path.join(EXAMPLE_DIR, "route_guide.proto")
DEFAULT_DB = os.path.join(EXAMPLE_DIR, "route_guide_db.json")

COORD_FACTOR = 1e7
EARTH_RADIUS_M = 6371000.0


def load_stubs(proto_path=DEFAULT_PROTO):
    """Compile the route_guide proto; return (pb2, pb2_grpc)."""
    return peerlib.load_stubs(proto_path, prefix="grpcore-route-guide-stubs-")


def load_features(pb2, path=DEFAULT_DB):
    """The JSON array of {"location": {"latitude", "longitude"}, "name"} as Features."""
    with open(path) as f:
        entries = json.load(f)
    return [
        pb2.Feature(
            name=e["name"],
            location=pb2.Point(latitude=e["location"]["latitude"],
                               longitude=e["location"]["longitude"]),
        )
        for e in entries
    ]


def in_range(point, rect):
    left = min(rect.lo.longitude, rect.hi.longitude)
    right = max(rect.lo.longitude, rect.hi.longitude)
    bottom = min(rect.lo.latitude, rect.hi.latitude)
    top = max(rect.lo.latitude, rect.hi.latitude)
    return left <= point.longitude <= right and bottom <= point.latitude <= top


def distance(a, b):
    """Haversine distance in metres, truncated: the same operations as the Rust example."""
    lat1 = math.radians(a.latitude / COORD_FACTOR)
    lat2 = math.radians(b.latitude / COORD_FACTOR)
    dlat = lat2 - lat1
    dlon = math.radians((float(b.longitude) - float(a.longitude)) / COORD_FACTOR)
    s_lat = math.sin(dlat / 2.0)
    s_lon = math.sin(dlon / 2.0)
    h = s_lat * s_lat + math.cos(lat1) * math.cos(lat2) * s_lon * s_lon
    c = 2.0 * math.atan2(math.sqrt(h), math.sqrt(1.0 - h))
    return int(EARTH_RADIUS_M * c)
