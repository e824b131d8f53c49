#!/usr/bin/env python3
"""A TCP proxy that counts the bytes it forwards, to see compression on the wire.

Tests put it between a gRPC client and server and compare the totals of a run
with compression against one without.

Usage:
    byte_proxy.py TARGET

TARGET is host:port (or just a port, on 127.0.0.1) of the server.  The proxy
listens on 127.0.0.1 on a free port and forwards every connection it accepts
to TARGET, unchanged, in both directions.

Protocol with the parent process (like the echo peers'):
  * stdout's first line is ``PORT <n>``, flushed as soon as the proxy listens.
  * Each line written to its stdin makes it print the totals so far as
    ``BYTES up=<n> down=<m>`` (up: client to TARGET, down: TARGET to client,
    summed over all connections; TCP payload only, no headers).
  * On stdin EOF (when stdin is a pipe, a socket or a terminal; /dev/null or a
    closed stdin is not watched), SIGTERM or SIGINT, or when its parent process
    goes away, it prints the final ``BYTES up=<n> down=<m>`` line and exits 0.
Nothing else goes to stdout; diagnostics go to stderr.
"""

import os

# Taken first thing, so that a parent dying during start-up is still noticed.
PARENT_PID = os.getppid()

import signal
import socket
import stat
import sys
import threading

CHUNK = 64 * 1024
CONNECT_TIMEOUT_S = 10.0


def log(msg):
    print(f"byte_proxy: {msg}", file=sys.stderr, flush=True)


def parse_target(text):
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad TARGET {text!r}: want host:port")
    return host, int(port)


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.up = 0
        self.down = 0
        self.out_lock = threading.Lock()

    def add(self, direction, n):
        with self.lock:
            setattr(self, direction, getattr(self, direction) + n)

    def report(self):
        with self.lock:
            line = f"BYTES up={self.up} down={self.down}\n"
        with self.out_lock:
            try:
                sys.stdout.write(line)
                sys.stdout.flush()
            except (OSError, ValueError):
                pass  # nobody reads stdout any more


def close_quietly(sock, how=None):
    try:
        if how is not None:
            sock.shutdown(how)
        else:
            sock.close()
    except OSError:
        pass


def pump(src, dst, direction, counts, done):
    """Copy src to dst until EOF (then half-close dst) or an error (then drop both)."""
    try:
        while True:
            data = src.recv(CHUNK)
            if not data:
                close_quietly(dst, socket.SHUT_WR)
                break
            dst.sendall(data)
            counts.add(direction, len(data))
    except OSError:
        close_quietly(src, socket.SHUT_RDWR)
        close_quietly(dst, socket.SHUT_RDWR)
    finally:
        done()


def serve_connection(client, target, counts):
    try:
        upstream = socket.create_connection(target, timeout=CONNECT_TIMEOUT_S)
        upstream.settimeout(None)
    except OSError as exc:
        log(f"cannot connect to {target[0]}:{target[1]}: {exc}")
        close_quietly(client)
        return
    for sock in (client, upstream):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    finished = []
    lock = threading.Lock()

    def done():
        with lock:
            finished.append(True)
            if len(finished) == 2:
                close_quietly(client)
                close_quietly(upstream)

    for src, dst, direction in [(client, upstream, "up"), (upstream, client, "down")]:
        threading.Thread(target=pump, args=(src, dst, direction, counts, done),
                         daemon=True).start()


def accept_loop(listener, target, counts):
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return  # listener closed
        threading.Thread(target=serve_connection, args=(client, target, counts),
                         daemon=True).start()


def watch_stdin(stop, counts):
    """A line on stdin prints the totals; EOF stops (if stdin can close)."""
    if sys.stdin is None:
        return
    try:
        fd = sys.stdin.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError):
        return
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)):
        return  # e.g. /dev/null: EOF at once would mean "stop now"; ignore it

    def run():
        pending = b""
        try:
            while True:
                data = os.read(fd, 4096)
                if not data:
                    break
                pending += data
                while b"\n" in pending:
                    _, pending = pending.split(b"\n", 1)
                    counts.report()
        except OSError:
            pass
        stop.set()

    threading.Thread(target=run, name="stdin-watch", daemon=True).start()


def watch_parent(stop):
    def run():
        while not stop.wait(0.5):
            if os.getppid() != PARENT_PID:
                stop.set()

    threading.Thread(target=run, name="parent-watch", daemon=True).start()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    try:
        target = parse_target(argv[0])
    except ValueError as exc:
        log(str(exc))
        return 2

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    counts = Counts()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    threading.Thread(target=accept_loop, args=(listener, target, counts), daemon=True).start()

    sys.stdout.write(f"PORT {listener.getsockname()[1]}\n")
    sys.stdout.flush()

    watch_stdin(stop, counts)
    watch_parent(stop)
    while not stop.wait(0.5):
        pass
    close_quietly(listener)
    counts.report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
