#!/usr/bin/env python3
"""Runs the interop matrix: grpcore's interop client against the Python grpcio and grpc-js
interop servers, and their clients against grpcore's server, over plaintext and TLS, one
process per case. Prints a case x (client -> server, transport) table, the output of every
failed cell, and a closing ``N passed, M failed`` line; exits 1 if any cell failed (2 if
the matrix could not run at all).

    interop/run-matrix.py [--transports plaintext,tls] [--peers python,node]
                          [--cases NAME,...] [--jobs N] [--no-build]

It first builds interop_server and interop_client (cargo build -p grpcore-interop, debug,
in the workspace's target directory, so CI reuses what its other steps compiled). The peers
need what scripts/setup.sh installs: grpcio and grpcio-tools for Python, and
`npm ci` in interop/peers/node.

Cells marked n/a are cases a peer's library cannot serve: grpc-js 1.14 servers neither
compress responses nor show whether a request arrived compressed, so the four compression
cases cannot run against the grpc-js server (the README explains; upstream's interop
matrix skips them for Node servers too); and the 1.51 C core does not tell grpcore's server
whether a request arrived compressed, so client_compressed_* cannot run against it.

Cells marked ok* passed but are client-only: the client decides them alone, so they say
nothing about grpcore's server (cancel_after_begin and timeout_on_sleeping_server from any
peer client; server_compressed_* from grpc-js, whose client never checks compression).
They count as passed; the line above the total lists them.
"""

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PYTHON = os.environ.get("PYTHON", sys.executable)

CASES = [
    "empty_unary",
    "large_unary",
    "client_compressed_unary",
    "server_compressed_unary",
    "client_streaming",
    "client_compressed_streaming",
    "server_streaming",
    "server_compressed_streaming",
    "ping_pong",
    "empty_stream",
    "custom_metadata",
    "status_code_and_message",
    "special_status_message",
    "unimplemented_method",
    "unimplemented_service",
    "cancel_after_begin",
    "cancel_after_first_response",
    "timeout_on_sleeping_server",
]
COMPRESSION_CASES = {
    "client_compressed_unary",
    "server_compressed_unary",
    "client_compressed_streaming",
    "server_compressed_streaming",
}
# (server implementation, case) pairs the server's library cannot serve, with the reason.
NOT_APPLICABLE = {
    ("grpc-js", case): "grpc-js servers cannot compress responses or see request compression"
    for case in COMPRESSION_CASES
}
# The 1.51 C core does not tell a server whether a request arrived compressed (interop/README.md,
# "Compression"), so grpcore's server refuses expect_compressed instead of guessing.
NOT_APPLICABLE.update({
    ("grpcore", case): "grpcore's server cannot see request compression on the 1.51 core"
    for case in ("client_compressed_unary", "client_compressed_streaming")
})

# (client, server, case) cells whose pass is decided by the client alone: they pass
# whatever grpcore's server does, so the table marks them "ok*" (client-only) rather than
# letting them count as evidence about the server.
CLIENT_ONLY = {}
for _peer in ("grpcio", "grpc-js"):
    # The client cancels (or times out) and checks the status its own library reports;
    # nothing in the result comes from the server.
    CLIENT_ONLY[(_peer, "grpcore", "cancel_after_begin")] = (
        "cancel_after_begin: the client's own cancellation decides the status")
    CLIENT_ONLY[(_peer, "grpcore", "timeout_on_sleeping_server")] = (
        "timeout_on_sleeping_server: the client's own deadline decides the status")
# grpc-js's interop client never checks that the response arrived compressed.
for _case in ("server_compressed_unary", "server_compressed_streaming"):
    CLIENT_ONLY[("grpc-js", "grpcore", _case)] = (
        "server_compressed_* from grpc-js: its client does not check the response's compression")

SERVER_START_TIMEOUT_S = 60
CASE_TIMEOUT_S = 60
TLS_HOST_OVERRIDE = "foo.test.google.fr"


def log(msg):
    print(f"run-matrix: {msg}", file=sys.stderr, flush=True)


def build():
    """Builds the Rust binaries; returns {name: path}."""
    cmd = ["cargo", "build", "-p", "grpcore-interop", "--bins", "--message-format=json-render-diagnostics"]
    log("building: " + " ".join(cmd))
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(2)
    paths = {}
    for line in proc.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
            paths[msg["target"]["name"]] = msg["executable"]
    return paths


def implementations(bins):
    """name -> (server command, client command)."""
    py = os.path.join(HERE, "peers", "python")
    node = os.path.join(HERE, "peers", "node")
    return {
        "grpcore": ([bins["interop_server"]], [bins["interop_client"]]),
        "grpcio": ([PYTHON, os.path.join(py, "interop_server.py")], [PYTHON, os.path.join(py, "interop_client.py")]),
        "grpc-js": (["node", os.path.join(node, "interop_server.js")], ["node", os.path.join(node, "interop_client.js")]),
    }


class Server:
    """A running interop server; its output goes to a log file."""

    def __init__(self, name, command, tls, workdir):
        self.name = name
        self.log_path = os.path.join(workdir, f"server-{name}-{'tls' if tls else 'plaintext'}.log")
        self.log = open(self.log_path, "w")
        args = ["--port=0"] + (["--use_tls=true"] if tls else [])
        self.proc = subprocess.Popen(
            command + args, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL, text=True
        )
        lines = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=SERVER_START_TIMEOUT_S)
        except queue.Empty:
            line = ""
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"the {name} server did not start ({line.strip()!r}); its log:\n{self.log_tail()}")
        self.port = int(line.split()[1])

    def log_tail(self, lines=30):
        self.log.flush()
        with open(self.log_path) as f:
            return "".join(f.readlines()[-lines:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def run_case(command, port, case, tls):
    args = ["--server_host=localhost", f"--server_port={port}", f"--test_case={case}"]
    if tls:
        args += ["--use_tls=true", "--use_test_ca=true", f"--server_host_override={TLS_HOST_OVERRIDE}"]
    start = time.monotonic()
    try:
        proc = subprocess.run(
            command + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, timeout=CASE_TIMEOUT_S,
        )
        ok, output = proc.returncode == 0, proc.stdout
    except subprocess.TimeoutExpired as e:
        ok, output = False, f"(timed out after {CASE_TIMEOUT_S} s)\n{e.stdout or ''}"
    return ok, output, time.monotonic() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transports", default="plaintext,tls")
    parser.add_argument("--peers", default="grpcio,grpc-js")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--jobs", type=int, default=4, help="client processes at a time (default 4)")
    parser.add_argument("--no-build", action="store_true", help="use target/debug binaries as they are")
    args = parser.parse_args()
    transports = args.transports.split(",")
    peers = args.peers.split(",")
    cases = args.cases.split(",")
    for bad in [t for t in transports if t not in ("plaintext", "tls")] + [c for c in cases if c not in CASES]:
        raise SystemExit(f"unknown transport or case {bad!r}")

    started = time.monotonic()
    if args.no_build:
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        bins = {b: os.path.join(target, "debug", b) for b in ("interop_server", "interop_client")}
    else:
        bins = build()
    impls = implementations(bins)
    for peer in peers:
        if peer not in impls or peer == "grpcore":
            raise SystemExit(f"unknown peer {peer!r} (grpcio, grpc-js)")
    build_s = time.monotonic() - started

    # Columns: (client, server, transport), grpcore on one side and a peer on the other.
    columns = []
    for transport in transports:
        for peer in peers:
            columns.append(("grpcore", peer, transport))
        for peer in peers:
            columns.append((peer, "grpcore", transport))
    results = {}  # (case, column) -> "ok" | "FAIL" | "n/a"
    failures = []
    workdir = tempfile.mkdtemp(prefix="grpcore-interop-matrix-")
    setup_error = False
    for transport in transports:
        tls = transport == "tls"
        servers = {}
        try:
            for name in ["grpcore"] + peers:
                servers[name] = Server(name, impls[name][0], tls, workdir)
            log(f"{transport}: servers up: " + ", ".join(f"{n} on {s.port}" for n, s in servers.items()))
            jobs = {}
            with futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
                for column in [c for c in columns if c[2] == transport]:
                    client, server, _ = column
                    for case in cases:
                        if (server, case) in NOT_APPLICABLE:
                            results[(case, column)] = "n/a"
                            continue
                        job = pool.submit(run_case, impls[client][1], servers[server].port, case, tls)
                        jobs[job] = (case, column)
                for job in futures.as_completed(jobs):
                    case, column = jobs[job]
                    ok, output, seconds = job.result()
                    client_only = (column[0], column[1], case) in CLIENT_ONLY
                    results[(case, column)] = ("ok*" if client_only else "ok") if ok else "FAIL"
                    if not ok:
                        failures.append((case, column, output, seconds, servers[column[1]]))
            for case, column, output, seconds, server in failures:
                if column[2] == transport:
                    client, srv, _ = column
                    print(f"--- FAILED {case}: {client} client -> {srv} server ({transport}, {seconds:.1f} s)")
                    print(output.rstrip())
                    print(f"--- {srv} server log (last lines):")
                    print(server.log_tail().rstrip())
        except RuntimeError as e:
            log(f"{transport}: {e}")
            setup_error = True
            for column in [c for c in columns if c[2] == transport]:
                for case in cases:
                    results.setdefault((case, column), "FAIL")
        finally:
            for server in servers.values():
                server.stop()

    # The table: one row per case, one column per (client -> server, transport).
    headers = [f"{c}->{s}" for c, s, _ in columns]
    width = max(len(c) for c in cases)
    print()
    for transport in transports:
        cols = [i for i, c in enumerate(columns) if c[2] == transport]
        print(f"{transport}:".ljust(width) + "  " + "  ".join(headers[i] for i in cols))
        for case in cases:
            cells = [results[(case, columns[i])].center(len(headers[i])) for i in cols]
            print(case.ljust(width) + "  " + "  ".join(cells))
        print()
    values = list(results.values())
    client_only = values.count("ok*")
    passed, failed, na = values.count("ok") + client_only, values.count("FAIL"), values.count("n/a")
    total_s = time.monotonic() - started
    if client_only:
        reasons = sorted(set(why for (c, srv, case), why in CLIENT_ONLY.items()
                             for t in transports
                             if results.get((case, (c, srv, t))) == "ok*"))
        print(f"{client_only} cells ok* (client-only: they pass whatever grpcore's server does): "
              + "; ".join(reasons))
    if na:
        reasons = sorted(set(NOT_APPLICABLE[k] for k in NOT_APPLICABLE if k[0] in peers + ["grpcore"]))
        print(f"{na} cells n/a: {'; '.join(reasons)}")
    print(f"time: {total_s:.0f} s ({build_s:.0f} s building)")
    print(f"{passed} passed, {failed} failed")
    sys.exit(2 if setup_error else (1 if failed else 0))


if __name__ == "__main__":
    main()
