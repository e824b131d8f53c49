"""Shared by the Python test peers: stub generation and the "stop when whoever started
us goes away" watchers.

Stubs are generated at start-up with grpc_tools.protoc into a temporary directory, so
nothing generated is kept in the repository.
"""

import importlib
import os
import shutil
import stat
import sys
import tempfile
import threading

PARENT_PID = os.getppid()


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def load_stubs(proto_path, prefix="grpcore-stubs-"):
    """Compile proto_path with grpc_tools.protoc; return its (pb2, pb2_grpc) modules."""
    from grpc_tools import protoc

    proto_dir, proto_file = os.path.split(os.path.abspath(proto_path))
    module = os.path.splitext(proto_file)[0]
    out_dir = tempfile.mkdtemp(prefix=prefix)
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
        # The modules are in memory now; the files are no longer needed.
        shutil.rmtree(out_dir, ignore_errors=True)


def watch_stdin(stop):
    """Set stop when stdin reaches EOF, if stdin is something that can close."""
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
        try:
            while os.read(fd, 4096):
                pass
        except OSError:
            pass
        stop.set()

    threading.Thread(target=run, name="stdin-watch", daemon=True).start()


def watch_parent(stop):
    """Set stop when the parent process dies (we get re-parented)."""
    def run():
        while not stop.wait(0.5):
            if os.getppid() != PARENT_PID:
                stop.set()

    threading.Thread(target=run, name="parent-watch", daemon=True).start()
