#!/usr/bin/env bash
# The hello-world demo (what the README's quick start runs): installs what is
# missing, builds the helloworld_{server,client} binaries of the examples package
# (examples/helloworld/, on code generated from helloworld.proto), starts the server on a
# free port, calls it once with the client, checks the greeting, and stops the
# server gracefully by closing its stdin. Exits 0 when all of that worked, 1
# otherwise; the server never outlives the script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

NAME=demo
WANT="Hello $NAME"
START_TIMEOUT=60  # seconds for the server to print its port
STOP_TIMEOUT=15   # seconds for the graceful shutdown (the server gives calls 5)

say() { printf 'demo: %s\n' "$*"; }
fail() {
    say "FAILED: $*" >&2
    exit 1
}

server_pid=
tmp=
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ -n "$tmp" ]; then
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash scripts/setup.sh

say "building the examples"
cargo build -p grpcore-examples --bin helloworld_server --bin helloworld_client
target_dir=$(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin=$target_dir/debug

# The server's stdin and stdout are FIFOs that this script holds open
# read-write (which never blocks on Linux): closing fd 3 gives the server EOF
# on stdin, its signal to shut down; fd 4 is where its "listening on" line
# arrives. The server and the client must not inherit either descriptor.
tmp=$(mktemp -d)
mkfifo "$tmp/stdin" "$tmp/stdout"
exec 3<>"$tmp/stdin" 4<>"$tmp/stdout"
"$bin/helloworld_server" --port 0 <"$tmp/stdin" >"$tmp/stdout" 3>&- 4>&- &
server_pid=$!

line=
for ((waited = 0; waited < START_TIMEOUT; waited++)); do
    if read -r -t 1 line <&4; then
        break
    fi
    line=
    kill -0 "$server_pid" 2>/dev/null || fail "the server exited before it was listening (its error is above)"
done
[ -n "$line" ] || fail "the server printed nothing within ${START_TIMEOUT}s"
[[ $line =~ ^listening\ on\ (127\.0\.0\.1:[0-9]+)$ ]] ||
    fail "expected 'listening on 127.0.0.1:<port>' from the server, got: $line"
target=${BASH_REMATCH[1]}
say "server listening on $target"

# The client has its own 5 s deadline; timeout(1) only guards against a hang.
greeting=$(timeout 60 "$bin/helloworld_client" --target "$target" --name "$NAME" 3>&- 4>&-) ||
    fail "the client failed (exit $?; its error is above)"
[ "$greeting" = "$WANT" ] || fail "expected the greeting '$WANT', got '$greeting'"
say "client got: $greeting"

exec 3>&-
for ((waited = 0; waited < STOP_TIMEOUT * 10; waited++)); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$server_pid" 2>/dev/null && fail "the server did not stop within ${STOP_TIMEOUT}s of its stdin closing"
rc=0
wait "$server_pid" || rc=$?
server_pid=
[ "$rc" -eq 0 ] || fail "the server exited with status $rc"
say "server stopped cleanly"
say "OK"
