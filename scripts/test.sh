#!/usr/bin/env bash
# The project's test command (what the README and CI run): installs what is
# missing, then lints and tests the whole workspace. Prints how long each step
# took, so slow steps are easy to spot in CI logs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

timings=()
step() {
    local name="$1"; shift
    local start=$SECONDS
    printf '==> %s\n' "$name"
    "$@"
    local took=$((SECONDS - start))
    timings+=("$(printf '%-8s %4ds' "$name" "$took")")
    printf '<== %s: %ds\n' "$name" "$took"
}

step setup bash scripts/setup.sh
# Lint first: it fails faster than the test build, and it keeps the test
# runner's summary at the end of the output.
step clippy cargo clippy --workspace --all-targets --features protobuf,tracing,metrics -- -D warnings
# `cargo test --workspace` runs unit, integration and doc tests, builds the examples, and
# runs the benchmarks once at smoke size (harness = false benches run their main()).
step test cargo test --workspace --features protobuf,tracing,metrics --benches --tests --lib --examples
step doctest cargo test --workspace --features protobuf,tracing,metrics --doc
# The executor's state machines (src/task/state.rs, src/cq/gate.rs) and the call state word
# (src/call/state.rs) model-checked with loom, bounded to 3 preemptions (they print their
# interleaving counts). --cfg loom rebuilds every crate, hence a target directory of its own.
step loom env LOOM_MAX_PREEMPTIONS=3 RUSTFLAGS="--cfg loom -C debug-assertions" \
    CARGO_TARGET_DIR="${GRPCORE_LOOM_TARGET_DIR:-target-loom}" \
    cargo test -p grpcore --lib --release loom -- --nocapture
# The gRPC interop cases both ways against grpcio and grpc-js, plaintext and TLS
# (interop/README.md); prints the case x peer table and "N passed, M failed".
step interop "${PYTHON:-python3}" interop/run-matrix.py
step leaks bash scripts/leak-check.sh
step grpc-sys bash grpc-sys/ci.sh
# The safe layer on the vendored (statically linked, from-source) core: the same unary and
# streaming tests, in grpc-sys/ci.sh's cached target dir so the core is built only once.
vendored_target=${GRPCORE_SYS_CI_TARGET_DIR:-/var/tmp/grpcore-vendored-target}
step vendored env CARGO_TARGET_DIR="$vendored_target" \
    GRPCORE_SYS_GRPC_SOURCE="${GRPCORE_SYS_GRPC_SOURCE:-$vendored_target/grpc-src}" \
    cargo test --features vendored --test unary --test streaming

printf 'timings:\n'
printf '  %s\n' "${timings[@]}"
