"""Shared by route_guide_server.py and route_guide_client.py: stub generation,
the feature database and the geometry, matching examples/route_guide in Rust.

The stubs are generated at start-up from examples/route_guide/route_guide.proto with
grpc_tools.protoc into a temporary directory, so nothing generated is kept.
"""

import importlib
import json
import math
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "..", "examples", "route_guide"))
DEFAULT_PROTO = os.path.join(EXAMPLE_DIR, "route_guide.proto")
DEFAULT_DB = os.path.join(EXAMPLE_DIR, "route_guide_db.json")

COORD_FACTOR = 1e7
EARTH_RADIUS_M = 6371000.0


def load_stubs(proto_path=DEFAULT_PROTO):
    """Compile proto_path with grpc_tools.protoc; return (pb2, pb2_grpc)."""
    from grpc_tools import protoc

    proto_dir, proto_file = os.path.split(os.path.abspath(proto_path))
    module = os.path.splitext(proto_file)[0]
    out_dir = tempfile.mkdtemp(prefix="grpcore-route-guide-stubs-")
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
