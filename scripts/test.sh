#!/usr/bin/env bash
# The project's test command (what the README and CI run): installs what is
# missing, then lints and tests the whole workspace. Prints how long each step
# took, so slow steps are easy to spot in CI logs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Every step runs under a time bound, so a hang (a "does not deadlock" test that does)
# fails CI with a message instead of stalling it. Bounds are about 2-3x a cold run on a
# 2-core machine (setup's installs ~5 min, the vendored core's build with its libraries
# ~15 min on a loaded machine); a step not
# listed gets the default. GRPCORE_STEP_TIMEOUT=SECS overrides them all.
declare -A step_bounds=(
    [setup]=900 [clippy]=1200 [test]=2700 [doctest]=1200 [docs]=900 [interop]=900 [leaks]=1500
    [grpc-sys]=1800 [vendored]=1800 [shared-writes]=1200
)
default_step_bound=1800
timings=()
step() {
    local name="$1"; shift
    local start=$SECONDS
    local bound=${GRPCORE_STEP_TIMEOUT:-${step_bounds[$name]:-$default_step_bound}}
    printf '==> %s (bound %ds)\n' "$name" "$bound"
    local rc=0
    # timeout signals the step's whole process group; KILL follows 30 s after TERM.
    timeout --kill-after=30 "$bound" "$@" || rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        printf 'scripts/test.sh: step %s did not finish within its bound of %ds and was stopped (a hang?)\n' \
            "$name" "$bound" >&2
        exit 1
    elif [ "$rc" -ne 0 ]; then
        printf 'scripts/test.sh: step %s failed (exit %d)\n' "$name" "$rc" >&2
        exit "$rc"
    fi
    local took=$((SECONDS - start))
    timings+=("$(printf '%-8s %4ds' "$name" "$took")")
    printf '<== %s: %ds\n' "$name" "$took"
}

step setup bash scripts/setup.sh
# Lint first: it fails faster than the test build, and it keeps the test
# runner's summary at the end of the output.
# Every unsafe block and impl, tests and benches included, carries a `// SAFETY:` comment.
step clippy cargo clippy --workspace --all-targets --features protobuf,tracing,metrics,admin,access,xds -- \
    -W clippy::undocumented_unsafe_blocks -D warnings
# `cargo test --workspace` runs unit, integration and doc tests, builds the examples, and
# runs the benchmarks once at smoke size (harness = false benches run their main()).
step test cargo test --workspace --features protobuf,tracing,metrics,admin,access,xds --benches --tests --lib --examples
step doctest cargo test --workspace --features protobuf,tracing,metrics,admin,access,xds --doc
# The API docs build without a broken link (rustdoc warnings are errors).
step docs env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p grpcore --features protobuf,tracing,metrics,admin,access,xds
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
# The safe layer on the vendored core (gRPC, abseil, re2, c-ares, zlib and OpenSSL from source,
# all linked statically): the same unary and streaming tests, and the hello-world server and
# client run in a chroot without any of those shared libraries, in grpc-sys/ci.sh's cached
# target dir so the core is built only once.
# An explicit installation (GRPCORE_SYS_GRPC_LIB_DIR…) would take precedence over the
# vendored build, so the step unsets it; it then checks with ldd that the binaries need
# only the C/C++ runtime, and runs grpcore-sys's version tests, which tell the vendored
# core from the system one by where grpc_version_string's code lives.
vendored_target=${GRPCORE_SYS_CI_TARGET_DIR:-/var/tmp/grpcore-vendored-target}
step vendored env -u GRPCORE_SYS_GRPC_LIB_DIR -u GRPCORE_SYS_GRPC_INCLUDE_DIR -u GRPCORE_SYS_STATIC \
    CARGO_TARGET_DIR="$vendored_target" \
    GRPCORE_SYS_GRPC_SOURCE="${GRPCORE_SYS_GRPC_SOURCE:-$vendored_target/grpc-src}" \
    bash scripts/vendored-check.sh
# Feature shared-writes (a shim on the core's internal headers) against the system core, with
# the source tree grpc-sys/ci.sh fetched. (The vendored core always has the shim: the
# vendored step above runs the shared-writes tests on it.)
step shared-writes env GRPCORE_SYS_GRPC_SOURCE="${GRPCORE_SYS_GRPC_SOURCE:-$vendored_target/grpc-src}" \
    bash scripts/shared-writes-check.sh

printf 'timings:\n'
printf '  %s\n' "${timings[@]}"
