"""Shared by the bare-HTTP/2 test clients (h2_unary_frame.py, h2_unary_no_cancel.py): one
unary gRPC call over a plain connection with the pure-Python `h2` library, whose message
frame and headers are the caller's, and the reading of its answer.
"""

import socket
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions


def start_unary(port, path, grpc_timeout, frame, wait, extra_headers=()):
    """Connect to 127.0.0.1:port and send one unary call to path: its headers (with
    grpc-timeout, then extra_headers) and the message frame as given, then end the stream.
    Returns (sock, conn, stream_id); the socket times out after wait seconds."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=wait)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, [
        (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", f"127.0.0.1:{port}"),
        ("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", grpc_timeout),
        *extra_headers,
    ])
    conn.send_data(stream, frame, end_stream=True)
    sock.sendall(conn.data_to_send())
    return sock, conn, stream


def message_frame(flag, body):
    """A gRPC length-prefixed message: the compressed-flag byte, the length, the bytes."""
    return bytes([flag]) + len(body).to_bytes(4, "big") + body


def read_answer(sock, conn, stream, wait):
    """Read until the stream ends or is reset, the connection closes, or wait seconds pass.
    Returns a dict: grpc_status and grpc_message (None if none came), ended, reset, and
    data_bytes (response body bytes); after_end names the h2 error raised by a frame after
    the end of the stream, if one was."""
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
    return result
