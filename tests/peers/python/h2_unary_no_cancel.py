#!/usr/bin/env python3
"""One unary gRPC call over a bare HTTP/2 connection (the pure-Python `h2` library) that
never cancels anything: it sends the request with a `grpc-timeout` header and then only
reads. Whatever ends the call at its deadline must therefore be the server.

    h2_unary_no_cancel.py PORT PATH GRPC_TIMEOUT REQUEST_HEX WAIT_SECS

GRPC_TIMEOUT is the header's value (e.g. 300m), REQUEST_HEX the serialized request
message; the script gives up after WAIT_SECS. Prints one JSON line: grpc_status and
grpc_message (null if none came), elapsed seconds, whether the stream ended or was reset,
and how many response body bytes arrived.
"""

import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions


def main(argv):
    if len(argv) != 6:
        sys.exit(__doc__)
    port, path, timeout, body, wait = int(argv[1]), argv[2], argv[3], bytes.fromhex(argv[4]), float(argv[5])
    sock = socket.create_connection(("127.0.0.1", port), timeout=wait)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, [
        (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", f"127.0.0.1:{port}"),
        ("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", timeout),
    ])
    conn.send_data(stream, b"\x00" + len(body).to_bytes(4, "big") + body, end_stream=True)
    sock.sendall(conn.data_to_send())

    start = time.monotonic()
    buffered = b""
    result = {"grpc_status": None, "grpc_message": None, "ended": False, "reset": False, "data_bytes": 0}
    while not (result["ended"] or result["reset"]):
        left = wait - (time.monotonic() - start)
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        if not data:
            break
        buffered += data
        events = []
        # Feed h2 one frame at a time: the server may reset the stream right after its
        # trailers, and h2 raises on a frame for a closed stream, which would lose the
        # events of the frames before it in the same read.
        while len(buffered) >= 9 and len(buffered) >= 9 + int.from_bytes(buffered[:3], "big"):
            size = 9 + int.from_bytes(buffered[:3], "big")
            frame, buffered = buffered[:size], buffered[size:]
            try:
                events.extend(conn.receive_data(frame))
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as exc:
                # Frames after the end of our stream (a reset, a GOAWAY) change nothing.
                result["after_end"] = type(exc).__name__
        for event in events:
            if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                for key, value in event.headers:
                    if key == "grpc-status":
                        result["grpc_status"] = int(value)
                    elif key == "grpc-message":
                        result["grpc_message"] = value
            elif isinstance(event, h2.events.DataReceived):
                result["data_bytes"] += len(event.data)
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                result["ended"] = True
            elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                result["reset"] = True
        pending = conn.data_to_send()
        if pending:
            sock.sendall(pending)
    result["elapsed"] = round(time.monotonic() - start, 3)
    print(json.dumps(result), flush=True)
    sock.close()


if __name__ == "__main__":
    main(sys.argv)
