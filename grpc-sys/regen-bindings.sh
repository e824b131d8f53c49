#!/usr/bin/env bash
# Regenerates grpc-sys/src/bindings.rs from the installed core's headers with bindgen.
#   grpc-sys/regen-bindings.sh          rewrite the checked-in bindings
#   grpc-sys/regen-bindings.sh --check  fail when the checked-in bindings differ from a fresh generation
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fresh=$(mktemp)
trap 'rm -f "$fresh"' EXIT
GRPCORE_SYS_BINDINGS_OUT="$fresh" cargo build --quiet -p grpcore-sys --features bindgen --manifest-path "$here/../Cargo.toml"
if [ "${1:-}" = "--check" ]; then
  if ! diff -u "$here/src/bindings.rs" "$fresh" > /dev/null; then
    diff -u "$here/src/bindings.rs" "$fresh" | head -40
    echo "grpc-sys/src/bindings.rs is out of date: run grpc-sys/regen-bindings.sh and commit the result" >&2
    exit 1
  fi
  echo "bindings up to date"
else
  cp "$fresh" "$here/src/bindings.rs"
  echo "wrote $here/src/bindings.rs"
fi
