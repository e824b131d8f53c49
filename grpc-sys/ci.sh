#!/usr/bin/env bash
# grpcore-sys's CI checks (scripts/test.sh runs this; so can anyone, from a fresh clone):
#   1. fetch     gRPC 1.51.x source, the sources of abseil, re2, c-ares, zlib and OpenSSL, and the
#                build tools (fetch-grpc-source.sh; no-op when present)
#   2. vendored  build grpcore-sys with `--features vendored` (the core and those libraries, all
#                static) and run its tests against that core
#   3. static    the test binaries need no shared library but the C/C++ runtime (static-check.sh)
#   4. bindings  regen-bindings.sh --check: the checked-in bindings match a fresh bindgen run over
#                the headers of the source just built
#   5. pin       the pkg-config path refuses a core outside 29.x: a grpc.pc claiming 30.1.0 fails
#                the build with the message that says what to do (needs the system grpc.pc)
# Prints the time of each step.
#
# The cargo target dir and the source tree live outside the checkout, so a second run (or
# another clone) reuses the build of the core and its libraries (~15 minutes cold on 2 cores):
#   GRPCORE_SYS_CI_TARGET_DIR  cargo target dir (default /var/tmp/grpcore-vendored-target)
#   GRPCORE_SYS_GRPC_SOURCE    gRPC source tree (default $GRPCORE_SYS_CI_TARGET_DIR/grpc-src,
#                              fetched there when missing)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
manifest=$here/../Cargo.toml
export CARGO_TARGET_DIR=${GRPCORE_SYS_CI_TARGET_DIR:-/var/tmp/grpcore-vendored-target}
export GRPCORE_SYS_GRPC_SOURCE=${GRPCORE_SYS_GRPC_SOURCE:-$CARGO_TARGET_DIR/grpc-src}
# An explicit installation would take precedence over the vendored build.
unset GRPCORE_SYS_GRPC_LIB_DIR GRPCORE_SYS_GRPC_INCLUDE_DIR GRPCORE_SYS_STATIC
mkdir -p "$CARGO_TARGET_DIR"

timings=()
step() {
  local name=$1 start=$SECONDS
  shift
  printf '==> grpc-sys/ci.sh: %s\n' "$name"
  "$@"
  timings+=("$(printf '%-9s %5ds' "$name" "$((SECONDS - start))")")
  printf '<== grpc-sys/ci.sh: %s: %ds\n' "$name" "$((SECONDS - start))"
}

vendored_test() {
  local json
  json=$(mktemp)
  # Build first, keeping cargo's JSON messages: they name the test binaries and the build
  # script's OUT_DIR (where cmake left the core's archives).
  cargo test --manifest-path "$manifest" -p grpcore-sys --features vendored --no-run \
    --message-format=json-render-diagnostics > "$json"
  test_bins=$(grep -o '"executable":"[^"]*"' "$json" | cut -d'"' -f4)
  core_lib_dir=$(grep '"reason":"build-script-executed"' "$json" | grep '"package_id":"[^"]*grpc-sys' \
    | grep -o '"out_dir":"[^"]*"' | cut -d'"' -f4 | tail -1)/build
  rm -f "$json"
  cargo test --manifest-path "$manifest" -p grpcore-sys --features vendored
}

static_check() {
  # shellcheck disable=SC2086 # one path per word
  bash "$here/static-check.sh" $test_bins
}

pin_check() {
  local pc_dir out
  if ! pc_dir=$(pkg-config --variable=pcfiledir grpc 2>/dev/null); then
    echo "grpc-sys/ci.sh: no system grpc.pc; skipping the version-pin check"
    return 0
  fi
  local fake
  fake=$(mktemp -d)
  sed 's/^Version:.*/Version: 30.1.0/' "$pc_dir/grpc.pc" > "$fake/grpc.pc"
  if out=$(PKG_CONFIG_PATH=$fake cargo build --manifest-path "$manifest" -p grpcore-sys 2>&1); then
    echo "grpc-sys/ci.sh: a grpc.pc claiming core 30.1.0 was accepted; the pkg-config range must be 29.x" >&2
    rm -rf "$fake"
    return 1
  fi
  rm -rf "$fake"
  if ! grep -q 'version >= 29.0 and < 30' <<<"$out"; then
    echo "grpc-sys/ci.sh: the build failed, but not with the version-pin message:" >&2
    echo "$out" | tail -20 >&2
    return 1
  fi
  echo "a core 30.1.0 is refused at build time"
}

start_all=$SECONDS
step fetch bash "$here/fetch-grpc-source.sh" "$GRPCORE_SYS_GRPC_SOURCE"
step vendored vendored_test
step static static_check
step bindings env GRPCORE_SYS_GRPC_LIB_DIR="$core_lib_dir" \
  GRPCORE_SYS_GRPC_INCLUDE_DIR="$GRPCORE_SYS_GRPC_SOURCE/include" bash "$here/regen-bindings.sh" --check
step pin pin_check

printf 'grpc-sys/ci.sh timings (target dir %s):\n' "$CARGO_TARGET_DIR"
printf '  %s\n' "${timings[@]}"
printf '  %-9s %5ds\n' total "$((SECONDS - start_all))"
