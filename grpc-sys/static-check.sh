#!/usr/bin/env bash
# Checks that binaries built on the vendored core need no shared library but the C and C++
# runtime: `ldd` may list only linux-vdso, ld-linux, libc, libm, libstdc++ and libgcc_s (glibc's
# libpthread, libdl, librt and libutil too: Rust's std links them, and on glibc >= 2.34 they are
# stubs inside libc's package). Anything else (libgrpc, libabsl_*, libre2, libcares, libssl,
# libcrypto, libz, ...) fails the check, printed with the binary's whole ldd output.
#
#   grpc-sys/static-check.sh BINARY...
set -euo pipefail
[ $# -gt 0 ] || { echo "static-check.sh: no binary given" >&2; exit 2; }
runtime='^(linux-vdso\.so|ld-linux[-a-z0-9_.]*\.so|lib(c|m|stdc\+\+|gcc_s|pthread|dl|rt|util)\.so)'
bad=0
for bin in "$@"; do
  deps=$(ldd "$bin" | awk '{print $1}' | sed 's|.*/||')
  others=$(grep -Ev "$runtime" <<<"$deps" || true)
  if [ -n "$others" ]; then
    echo "static-check.sh: $bin needs shared libraries beyond the C/C++ runtime: $(echo $others)" >&2
    ldd "$bin" >&2
    bad=1
  else
    echo "static-check.sh: $(basename "$bin"): only the C/C++ runtime ($(echo $deps))"
  fi
done
exit "$bad"
