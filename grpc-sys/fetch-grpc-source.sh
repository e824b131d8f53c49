#!/usr/bin/env bash
# Fetches the pinned gRPC C core source (release 1.51.x, Debian bookworm's `grpc` source
# package) for grpcore-sys's `vendored` feature, and installs what building it needs.
#
#   grpc-sys/fetch-grpc-source.sh          unpack into grpc-sys/grpc-src (gitignored)
#   grpc-sys/fetch-grpc-source.sh DIR      unpack into DIR (then set GRPCORE_SYS_GRPC_SOURCE=DIR)
#
# Idempotent: packages already installed, an apt deb-src entry already present and a source
# tree already unpacked are left alone. Uses apt only (Debian/Ubuntu with bookworm's archive);
# needs root or sudo for the apt steps.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dest=${1:-$here/grpc-src}
release_series=1.51
say() { printf 'fetch-grpc-source: %s\n' "$*"; }

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo > /dev/null; then sudo_cmd=(sudo); else
    say "not root and no sudo: run this script as root (it uses apt-get)" >&2; exit 1
  fi
fi

# 1. Build dependencies of the vendored build: a C/C++ toolchain, cmake, pkg-config, and the
#    third-party libraries the core takes from the system (cmake "package" providers).
#    protobuf (library, libprotoc, protoc) is only looked up by gRPC's cmake configure step
#    (it declares a protoc-plugin target we never build); the C core links none of it.
#    libclang-dev is for bindgen (regen-bindings.sh, feature `bindgen`), which ci.sh runs too.
build_deps=(g++ make cmake pkg-config libabsl-dev libre2-dev libc-ares-dev libssl-dev zlib1g-dev
            libprotobuf-dev libprotoc-dev protobuf-compiler libclang-dev)
missing=()
for p in "${build_deps[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2> /dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
apt_updated=0
if [ ${#missing[@]} -gt 0 ]; then
  say "installing build dependencies: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -q
  apt_updated=1
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  say "build dependencies already installed: ${build_deps[*]}"
fi

# 2. The source tree.
if [ -f "$dest/CMakeLists.txt" ] && [ -d "$dest/include/grpc" ]; then
  say "source already present in $dest: nothing to fetch"
else
  if [ -e "$dest" ] && [ -n "$(ls -A "$dest" 2> /dev/null)" ]; then
    say "$dest exists but is not a gRPC source tree: remove it and run again" >&2; exit 1
  fi
  # apt-get source needs a deb-src entry for bookworm.
  if [ -z "$(apt-cache showsrc grpc 2> /dev/null | grep '^Version:' || true)" ]; then
    list=/etc/apt/sources.list.d/grpcore-deb-src.sources
    if [ ! -f "$list" ]; then
      # Reuse the archive URI apt already uses (deb822 file on Debian 12, else sources.list).
      uri=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)\/\?$/\1/p' /etc/apt/sources.list.d/*.sources 2> /dev/null | head -1 || true)
      if [ -z "$uri" ]; then
        uri=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\/debian\)\/\?[[:space:]]\+bookworm[[:space:]].*/\2/p' /etc/apt/sources.list 2> /dev/null | head -1 || true)
      fi
      uri=${uri:-http://deb.debian.org/debian}
      say "adding a deb-src entry for bookworm ($uri) in $list"
      printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" \
        | "${sudo_cmd[@]}" tee "$list" > /dev/null
      apt_updated=0
    fi
    if [ "$apt_updated" -eq 0 ]; then
      say "apt-get update"
      "${sudo_cmd[@]}" apt-get update -q
    fi
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  chmod 755 "$tmp" # apt's download user (_apt) writes there
  say "downloading Debian's grpc source package into $tmp"
  (cd "$tmp" && apt-get source --download-only grpc)
  orig=$(ls "$tmp"/grpc_*.orig.tar.* | head -1)
  version=$(basename "$orig" | sed -n 's/^grpc_\([0-9.]*\)\.orig\.tar\..*/\1/p')
  case "$version" in
    "$release_series".*) ;;
    *) say "Debian's grpc source is release '$version', not $release_series.x: grpcore-sys's bindings need $release_series.x" >&2; exit 1 ;;
  esac
  # The upstream tarball builds the C core as is. Debian's patches are not applied: they touch
  # the Python and Ruby packaging, the legacy Makefile, the pkg-config install dir and the
  # opencensus-proto download (avoided below by creating the directory); none changes the C
  # core's code or its cmake `grpc` target.
  say "unpacking $(basename "$orig") (gRPC $version, upstream source without Debian's patches) into $dest"
  mkdir -p "$dest"
  tar -xf "$orig" -C "$dest" --strip-components=1
fi

# 3. gRPC's cmake configure step requires this directory even when nothing uses it.
if [ ! -d "$dest/third_party/opencensus-proto/src" ]; then
  say "creating $dest/third_party/opencensus-proto/src (gRPC's cmake requires it to exist)"
  mkdir -p "$dest/third_party/opencensus-proto/src"
fi

if [ "$dest" = "$here/grpc-src" ]; then
  say "done: cargo build -p grpcore-sys --features vendored now uses $dest"
else
  say "done: set GRPCORE_SYS_GRPC_SOURCE=$dest for cargo build -p grpcore-sys --features vendored"
fi
