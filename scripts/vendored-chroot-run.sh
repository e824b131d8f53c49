#!/usr/bin/env bash
# Runs the hello-world server and client built on the vendored core where no gRPC, abseil,
# re2, c-ares, zlib or OpenSSL shared library exists: in a chroot holding only the two
# binaries and the shared libraries ldd names for them (which grpc-sys/static-check.sh has
# checked are the C/C++ runtime). The server listens on a free port, the client calls
# SayHello, and the greeting must come back; then the server's stdin is closed, which stops
# it gracefully. Needs root (chroot).
#
#   scripts/vendored-chroot-run.sh HELLOWORLD_SERVER HELLOWORLD_CLIENT
set -euo pipefail
server=$1 client=$2
say() { printf 'vendored-chroot-run: %s\n' "$*"; }
if [ "$(id -u)" -ne 0 ]; then
  say "needs root for chroot" >&2; exit 1
fi
root=$(mktemp -d /tmp/grpcore-chroot.XXXXXX)
cleanup() { rm -rf "$root"; }
trap cleanup EXIT

mkdir -p "$root/bin"
cp "$server" "$root/bin/helloworld_server"
cp "$client" "$root/bin/helloworld_client"
# Each library at the path the dynamic loader will look for it (the interpreter's absolute
# path is recorded in the binary); symlinks resolved, so the chroot holds plain files.
libs=$(for bin in "$server" "$client"; do
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
done | sort -u)
for lib in $libs; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
say "chroot $root holds only:"
(cd "$root" && find . -type f -printf '  %p (%s bytes)\n' | sort)
for lib in grpc gpr absl re2 cares ssl crypto z; do
  if find "$root" -name "lib$lib*" | grep -q .; then
    say "lib$lib* is in the chroot" >&2; exit 1
  fi
done

# The server prints its port on stdout and stops gracefully (exit 0) when its stdin ends:
# stdin is a fifo this script holds open until the client is done.
mkfifo "$root/stdin"
exec {stdin_fd}<> "$root/stdin"
out=$root/server.out
# (The server must not inherit this script's writer of the fifo, or its stdin never ends.)
chroot "$root" /bin/helloworld_server --port 0 {stdin_fd}>&- < "$root/stdin" > "$out" 2>&1 &
server_pid=$!
port=
for _ in $(seq 300); do
  port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$out")
  [ -n "$port" ] && break
  kill -0 "$server_pid" 2> /dev/null || break
  sleep 0.1
done
if [ -z "$port" ]; then
  say "the server did not start in the chroot; it said:" >&2; cat "$out" >&2
  kill "$server_pid" 2> /dev/null || true
  exit 1
fi
say "server (pid $server_pid) in the chroot listens on 127.0.0.1:$port"
reply=$(chroot "$root" /bin/helloworld_client {stdin_fd}>&- --target "127.0.0.1:$port" --name "chrooted vendored core") || true
say "client in the chroot got: $reply"
exec {stdin_fd}>&-
status=0
wait "$server_pid" || status=$?
say "server stopped with status $status; its output:"; sed 's/^/  /' "$out"
if [ "$reply" != "Hello chrooted vendored core" ] || [ "$status" -ne 0 ]; then
  say "failed: expected the reply \"Hello chrooted vendored core\" and a server exiting 0" >&2
  exit 1
fi
say "ok: server and client ran with no gRPC, abseil, re2, c-ares, zlib or OpenSSL shared library present"
