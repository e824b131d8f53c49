#!/usr/bin/env python3
"""One unary gRPC call over a bare HTTP/2 connection (the pure-Python `h2` library) whose
message frame is made by hand: the compressed-flag byte and the `grpc-encoding` header are
the caller's, whatever the body holds. For checking how a server treats a message that
claims to be compressed without saying how, or with an encoding nobody knows.

    h2_unary_frame.py PORT PATH FLAG ENCODING BODY_HEX WAIT_SECS

FLAG is the frame's first byte (0 or 1); ENCODING the `grpc-encoding` header's value, or
`-` for no such header; BODY_HEX the message bytes as sent. The script gives up after
WAIT_SECS. Prints one JSON line: grpc_status and grpc_message (null if none came), whether
the stream ended or was reset, and how many response body bytes arrived.
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
    if len(argv) != 7:
        sys.exit(__doc__)
    port, path, flag, encoding = int(argv[1]), argv[2], int(argv[3]), argv[4]
    body, wait = bytes.fromhex(argv[5]), float(argv[6])
    sock = socket.create_connection(("127.0.0.1", port), timeout=wait)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    headers = [
        (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", f"127.0.0.1:{port}"),
        ("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", "10S"),
    ]
    if encoding != "-":
        headers.append(("grpc-encoding", encoding))
    conn.send_headers(stream, headers)
    conn.send_data(stream, bytes([flag]) + len(body).to_bytes(4, "big") + body, end_stream=True)
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
        # One frame at a time: h2 raises on a frame for a stream already closed (a reset
        # right after the trailers), which would lose the events before it in the same read.
        while len(buffered) >= 9 and len(buffered) >= 9 + int.from_bytes(buffered[:3], "big"):
            size = 9 + int.from_bytes(buffered[:3], "big")
            frame, buffered = buffered[:size], buffered[size:]
            try:
                events.extend(conn.receive_data(frame))
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as exc:
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
    print(json.dumps(result), flush=True)
    sock.close()


if __name__ == "__main__":
    main(sys.argv)
