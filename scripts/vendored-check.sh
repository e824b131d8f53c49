#!/usr/bin/env bash
# scripts/test.sh's "vendored" step: the unary and streaming tests on the vendored core,
# checked to be linked statically, and grpcore-sys's version tests with the vendored
# feature. Run it with the environment the step sets (CARGO_TARGET_DIR,
# GRPCORE_SYS_GRPC_SOURCE; no GRPCORE_SYS_GRPC_LIB_DIR, which would win over the vendored
# build: this script refuses to run with it set).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for var in GRPCORE_SYS_GRPC_LIB_DIR GRPCORE_SYS_GRPC_INCLUDE_DIR GRPCORE_SYS_STATIC; do
    if [ -n "${!var:-}" ]; then
        echo "vendored-check.sh: $var is set; it would take precedence over the vendored core" >&2
        exit 1
    fi
done
json=$(mktemp)
cargo test --features vendored --test unary --test streaming --no-run \
    --message-format=json-render-diagnostics >"$json"
bins=$(grep -o '"executable":"[^"]*"' "$json" | cut -d'"' -f4)
rm -f "$json"
[ -n "$bins" ] || { echo "vendored-check.sh: cargo named no test binary" >&2; exit 1; }
for bin in $bins; do
    if ldd "$bin" | grep -E 'lib(grpc|gpr|upb|address_sorting)\.so'; then
        echo "vendored-check.sh: $bin links a shared gRPC core: the vendored core must be linked statically" >&2
        exit 1
    fi
done
echo "vendored-check.sh: no shared gRPC core in: $(for b in $bins; do basename "$b"; done | tr '\n' ' ')"
cargo test --features vendored --test unary --test streaming
cargo test -p grpcore-sys --features vendored --test version
