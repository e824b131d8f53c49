#!/usr/bin/env bash
# scripts/test.sh's "shared-writes" step: grpcore's feature `shared-writes` (grpcore-sys's
# `batch-scope` shim, compiled against the core's internal headers) built against the SYSTEM
# libgrpc, with GRPCORE_SYS_GRPC_SOURCE pointing at that library's source (grpc-sys/ci.sh
# fetched it for the vendored step: Debian's source package, the same 1.51.1 release).
# Against the system core: every vendored build has the shim already (the vendored step runs
# the shared-writes tests on it); this step tests the shim against the library grpcore links
# by default, and only recompiles grpcore (~1-2 min).
# Runs: the outbox's unit tests, the feature's own tests, and the call suites that must
# behave as without the feature (unary, streaming, send_and_receive, deadlines and
# cancellation in call_core / drop_order / propagation, interceptors), plus clippy; then
# the leak check (scripts/leak-check.sh) of the suites that hold batches in the outbox:
# each held batch owns a call reference and a queue borrow.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -f "${GRPCORE_SYS_GRPC_SOURCE:-}/CMakeLists.txt" ]; then
    echo "shared-writes-check.sh: GRPCORE_SYS_GRPC_SOURCE must name the source tree of the installed core" \
         "(grpc-sys/fetch-grpc-source.sh DIR fetches it)" >&2
    exit 1
fi
features=protobuf,tracing,metrics,admin,access,xds,shared-writes
cargo clippy -p grpcore --features "$features" --lib --tests -- -W clippy::undocumented_unsafe_blocks -D warnings
cargo test -p grpcore --features "$features" --lib cq::
cargo test -p grpcore --features "$features" --test shared_writes --test unary --test streaming \
    --test send_and_receive --test call_core --test drop_order --test propagation --test interceptors
GRPCORE_LEAK_FEATURES="$features" bash scripts/leak-check.sh unary drop_order call_core send_and_receive shared_writes
