#!/usr/bin/env python3
"""grpcio peer: a routeguide.RouteGuide server with the semantics of
examples/route_guide/server.rs, over the same feature database.

Usage:
    route_guide_server.py [--db PATH] [--proto PATH]

Protocol with the parent process (as echo_server.py): stdout carries exactly
one line, ``PORT <n>``, once the server listens on 127.0.0.1:<n>; the server
stops when its stdin reaches EOF, on SIGTERM/SIGINT, or when its parent dies.

Semantics:
  * GetFeature: the named feature at the point, else a Feature with an empty
    name at that point.
  * ListFeatures: every named feature inside the rectangle, in database order.
  * RecordRoute: point_count, feature_count (points at a named feature),
    distance (haversine, metres, summed between consecutive points),
    elapsed_time in whole seconds.
  * RouteChat: each note is answered with the notes left earlier at the same
    point (by any client), then recorded.
"""


# First thing: peerlib records our parent's pid, so a parent dying during start-up is
# still noticed.
import peerlib  # noqa: F401

import argparse
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

import route_guide_common as common
from peerlib import watch_parent, watch_stdin


def log(msg):
    print(f"route_guide_server: {msg}", file=sys.stderr, flush=True)


def make_servicer(pb2, pb2_grpc, features):
    notes = {}
    notes_lock = threading.Lock()

    def named_feature_at(point):
        for f in features:
            if f.name and f.location.latitude == point.latitude and \
                    f.location.longitude == point.longitude:
                return f
        return None

    class RouteGuideServicer(pb2_grpc.RouteGuideServicer):
        def GetFeature(self, point, context):
            feature = named_feature_at(point)
            if feature is None:
                return pb2.Feature(name="", location=point)
            return feature

        def ListFeatures(self, rect, context):
            for f in features:
                if f.name and common.in_range(f.location, rect):
                    yield f

        def RecordRoute(self, points, context):
            start = time.monotonic()
            point_count = feature_count = dist = 0
            previous = None
            for point in points:
                point_count += 1
                if named_feature_at(point) is not None:
                    feature_count += 1
                if previous is not None:
                    dist += common.distance(previous, point)
                previous = point
            return pb2.RouteSummary(point_count=point_count, feature_count=feature_count,
                                    distance=dist,
                                    elapsed_time=int(time.monotonic() - start))

        def RouteChat(self, note_iterator, context):
            for note in note_iterator:
                key = (note.location.latitude, note.location.longitude)
                with notes_lock:
                    here = notes.setdefault(key, [])
                    earlier = list(here)
                    here.append(note)
                for n in earlier:
                    yield n

    return RouteGuideServicer()


def main(argv=None):
    parser = argparse.ArgumentParser(description="grpcio RouteGuide server for grpcore tests")
    parser.add_argument("--db", default=common.DEFAULT_DB, help="feature database (JSON)")
    parser.add_argument("--proto", default=common.DEFAULT_PROTO, help="route_guide.proto")
    args = parser.parse_args(argv)

    pb2, pb2_grpc = common.load_stubs(args.proto)
    features = common.load_features(pb2, args.db)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    pb2_grpc.add_RouteGuideServicer_to_server(make_servicer(pb2, pb2_grpc, features), server)
    port = server.add_insecure_port("127.0.0.1:0")
    if not port:
        log("could not bind 127.0.0.1:0")
        return 1
    server.start()
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()

    watch_stdin(stop)
    watch_parent(stop)
    while not stop.wait(0.5):
        pass
    server.stop(grace=0.5).wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
