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
import sys
import time

from h2lib import message_frame, read_answer, start_unary


def main(argv):
    if len(argv) != 6:
        sys.exit(__doc__)
    port, path, timeout, body, wait = int(argv[1]), argv[2], argv[3], bytes.fromhex(argv[4]), float(argv[5])
    sock, conn, stream = start_unary(port, path, timeout, message_frame(0, body), wait)
    start = time.monotonic()
    result = read_answer(sock, conn, stream, wait)
    result["elapsed"] = round(time.monotonic() - start, 3)
    print(json.dumps(result), flush=True)
    sock.close()


if __name__ == "__main__":
    main(sys.argv)
