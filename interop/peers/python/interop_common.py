"""What the grpcio interop server and client share: the grpc.testing messages, the flag
syntax of interop binaries, the built-in test certificates, and telling whether a received
message travelled compressed.

Messages come from ../../proto/grpc/testing with grpc_tools.protoc, generated once into a
cache directory named after the .proto contents (under $TMPDIR), so only the first process
after a change pays for protoc. They are loaded under private module names, so they do not
clash with grpcio's own ``grpc`` package.
"""

import hashlib
import importlib.util
import os
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CRATE = os.path.normpath(os.path.join(HERE, "..", ".."))
PROTO_ROOT = os.path.join(CRATE, "proto")
PROTOS = ["grpc/testing/empty.proto", "grpc/testing/messages.proto"]
CERTS = os.path.join(CRATE, "certs")

# Channel/server argument of the C core (grpcio is built on it): with 0, received messages
# are handed over as they travelled, still compressed if their flag was set.
RAW_RECEIVE_OPTION = ("grpc.per_message_decompression", 0)

ECHO_INITIAL_KEY = "x-grpc-test-echo-initial"
ECHO_TRAILING_KEY = "x-grpc-test-echo-trailing-bin"


def log(prog, msg):
    print(f"{prog}: {msg}", file=sys.stderr, flush=True)


def load_messages():
    """Returns (empty_pb2, messages_pb2)."""
    digest = hashlib.sha256()
    for rel in PROTOS:
        with open(os.path.join(PROTO_ROOT, rel), "rb") as f:
            digest.update(rel.encode() + b"\0" + f.read())
    out = os.path.join(tempfile.gettempdir(), f"grpcore-interop-py-{digest.hexdigest()[:16]}")
    done = os.path.join(out, "done")
    if not os.path.exists(done):
        from grpc_tools import protoc

        work = tempfile.mkdtemp(prefix="grpcore-interop-py-", dir=tempfile.gettempdir())
        rc = protoc.main(["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"--python_out={work}"] + PROTOS)
        if rc != 0:
            raise RuntimeError(f"protoc failed on {PROTOS} (exit {rc})")
        open(os.path.join(work, "done"), "w").close()
        try:
            os.rename(work, out)  # atomic; a concurrent process may have won the race
        except OSError:
            pass
    modules = []
    for rel in PROTOS:
        stem = os.path.splitext(os.path.basename(rel))[0]
        path = os.path.join(out, os.path.dirname(rel), f"{stem}_pb2.py")
        name = f"grpcore_interop_{stem}_pb2"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        modules.append(module)
    return tuple(modules)


def _is_zlib_header(data):
    if len(data) < 2:
        return False
    cmf, flg = data[0], data[1]
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and flg & 0x20 == 0 and (cmf << 8 | flg) % 31 == 0


def open_message(data):
    """(message bytes without compression, whether they were compressed).

    Where RAW_RECEIVE_OPTION is set, a message that travelled compressed arrives still
    compressed. gzip starts 0x1f 0x8b, which no protobuf message can start with (0x1f
    would be field 3 with the non-existent wire type 7); a zlib header can, so zlib counts
    only when the whole input inflates and its checksum matches.
    """
    if data[:2] == b"\x1f\x8b":
        return zlib.decompress(data, 16 + zlib.MAX_WBITS), True
    if _is_zlib_header(data):
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(data)
        except zlib.error:
            out = None
        if out is not None and inflater.eof and not inflater.unused_data:
            return out, True
    return data, False


def parser(message_class):
    """A deserializer returning (message, arrived compressed)."""

    def parse(data):
        body, compressed = open_message(data)
        return message_class.FromString(body), compressed

    return parse


def plain_parser(message_class):
    """A deserializer returning the message alone (compression opened if any)."""

    def parse(data):
        return message_class.FromString(open_message(data)[0])

    return parse


def serializer(message):
    return message.SerializeToString()


def parse_flags(argv, values, bools):
    """Interop flag syntax: --name=value or --name value; booleans may stand alone."""
    flags = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("--"):
            raise SystemExit(f"unexpected argument {arg!r} (flags look like --name=value)")
        name, eq, value = arg[2:].partition("=")
        if name in bools:
            if not eq:
                value = "true"
                if i < len(argv) and argv[i] in ("true", "false"):
                    value = argv[i]
                    i += 1
            if value not in ("true", "false", "1", "0"):
                raise SystemExit(f"--{name}: expected true or false, got {value!r}")
            flags[name] = value in ("true", "1")
        elif name in values:
            if not eq:
                if i >= len(argv):
                    raise SystemExit(f"--{name} needs a value")
                value = argv[i]
                i += 1
            flags[name] = value
        else:
            raise SystemExit(f"unknown flag --{name}")
    return flags


def read(path):
    with open(path, "rb") as f:
        return f.read()
