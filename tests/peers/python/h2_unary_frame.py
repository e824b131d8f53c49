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
import sys

from h2lib import message_frame, read_answer, start_unary


def main(argv):
    if len(argv) != 7:
        sys.exit(__doc__)
    port, path, flag, encoding = int(argv[1]), argv[2], int(argv[3]), argv[4]
    body, wait = bytes.fromhex(argv[5]), float(argv[6])
    extra = [] if encoding == "-" else [("grpc-encoding", encoding)]
    sock, conn, stream = start_unary(port, path, "10S", message_frame(flag, body), wait, extra)
    result = read_answer(sock, conn, stream, wait)
    print(json.dumps(result), flush=True)
    sock.close()


if __name__ == "__main__":
    main(sys.argv)
