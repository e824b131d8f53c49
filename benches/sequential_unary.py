"""Round trips per second of sequential in-process unary calls with Python grpcio:
the same loop as sequential_unary.rs (client and server in one process, 100-byte payload,
raw bytes, one completion-queue thread's worth of server). Prints `grpcio <calls> calls <rate> calls/s`."""
import sys
import time
from concurrent import futures

import grpc


def main():
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    echo = channel.unary_unary("/bench.Echo/Echo")
    payload = b"x" * 100
    for _ in range(max(calls // 10, 10)):
        echo(payload, timeout=10)
    start = time.perf_counter()
    for _ in range(calls):
        assert len(echo(payload, timeout=10)) == 100
    secs = time.perf_counter() - start
    print(f"grpcio {calls} calls {calls / secs:.0f} calls/s")
    channel.close()
    server.stop(None)


if __name__ == "__main__":
    main()
