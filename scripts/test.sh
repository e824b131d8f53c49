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
step clippy cargo clippy --workspace --all-targets --features protobuf -- -D warnings
# `cargo test --workspace` runs unit, integration and doc tests, builds the examples, and
# runs the benchmarks once at smoke size (harness = false benches run their main()).
step test cargo test --workspace --features protobuf --benches --tests --lib --examples
step doctest cargo test --workspace --features protobuf --doc
step leaks bash scripts/leak-check.sh
if [ -f grpc-sys/ci.sh ]; then
    step grpc-sys bash grpc-sys/ci.sh
fi

printf 'timings:\n'
printf '  %s\n' "${timings[@]}"
