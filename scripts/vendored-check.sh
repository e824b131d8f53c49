#!/usr/bin/env bash
# scripts/test.sh's "vendored" step: the safe layer on the vendored core (gRPC, abseil, re2,
# c-ares, zlib and OpenSSL all built from source and linked statically):
#   1. the unary and streaming tests and the hello-world server and client are built with
#      `--features vendored`, and ldd shows they need only the C/C++ runtime
#      (grpc-sys/static-check.sh);
#   2. the hello-world server and client talk in a chroot that holds nothing but them and that
#      runtime (scripts/vendored-chroot-run.sh; needs root);
#   3. the unary, streaming and shared-writes tests (a vendored build always shares writes:
#      the batch-scope shim is compiled against the very tree the core is built from), and
#      grpcore-sys's version tests, run on that core.
# Run it with the environment the step sets (CARGO_TARGET_DIR, GRPCORE_SYS_GRPC_SOURCE; no
# GRPCORE_SYS_GRPC_LIB_DIR, which would win over the vendored build: this script refuses to
# run with it set).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for var in GRPCORE_SYS_GRPC_LIB_DIR GRPCORE_SYS_GRPC_INCLUDE_DIR GRPCORE_SYS_STATIC; do
    if [ -n "${!var:-}" ]; then
        echo "vendored-check.sh: $var is set; it would take precedence over the vendored core" >&2
        exit 1
    fi
done
# executables BUILD-ARGS...: builds, printing the paths of the executables cargo produced.
executables() {
    local json bins
    json=$(mktemp)
    cargo "$@" --message-format=json-render-diagnostics >"$json"
    bins=$(grep -o '"executable":"[^"]*"' "$json" | cut -d'"' -f4)
    rm -f "$json"
    [ -n "$bins" ] || { echo "vendored-check.sh: cargo named no executable for: $*" >&2; exit 1; }
    echo "$bins"
}
tests=$(executables test --no-run --features vendored --test unary --test streaming)
hello=$(executables build -p grpcore-examples --features vendored --bin helloworld_server --bin helloworld_client)
# shellcheck disable=SC2086 # one path per word
bash grpc-sys/static-check.sh $tests $hello
server=$(grep '/helloworld_server$' <<<"$hello")
client=$(grep '/helloworld_client$' <<<"$hello")
ls -l "$server" "$client"
bash scripts/vendored-chroot-run.sh "$server" "$client"
cargo test --features vendored --test unary --test streaming --test shared_writes
cargo test -p grpcore-sys --features vendored --test version
