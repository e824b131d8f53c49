#!/usr/bin/env bash
# Fetches the pinned gRPC C core source (release 1.51.x, Debian bookworm's `grpc` source
# package) and the sources of the libraries it uses (Debian's `abseil`, `re2`, `c-ares`, `zlib`
# and `openssl` source packages) for grpcore-sys's `vendored` feature, which builds them all
# and links them statically; installs what building them needs.
#
#   grpc-sys/fetch-grpc-source.sh          unpack into grpc-sys/grpc-src (gitignored)
#   grpc-sys/fetch-grpc-source.sh DIR      unpack into DIR (then set GRPCORE_SYS_GRPC_SOURCE=DIR)
#
# Layout: gRPC in DIR, each library where gRPC's cmake "module" providers look for it
# (DIR/third_party/abseil-cpp, re2, cares/cares, zlib) and OpenSSL in DIR/third_party/openssl
# (grpcore-sys builds it with its own Configure; gRPC's module provider would want BoringSSL,
# which Debian does not package as source). DIR/third_party/grpcore-vendored-sources.txt lists
# the Debian source versions unpacked.
#
# Idempotent: packages already installed, an apt deb-src entry already present and sources
# already unpacked are left alone (a gRPC tree fetched by an older version of this script gets
# the libraries added). Uses apt only (Debian/Ubuntu with bookworm's archive); needs root or
# sudo for the apt steps.
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

# 1. Build dependencies of the vendored build: a C/C++ toolchain, cmake, perl (OpenSSL's
#    Configure, re2's table generator), dpkg-source (unpacks a source package with Debian's
#    patches), python3 with six and unicode-data (re2's Unicode tables, which Debian's re2
#    source omits and generates at build time, as done below). No library development package:
#    abseil, re2, c-ares, zlib and OpenSSL are built from the sources fetched here, and gRPC's
#    configure step is told not to look for protobuf. pkg-config is for the default
#    (non-vendored) build and ci.sh's pin check; libclang-dev for bindgen (regen-bindings.sh,
#    feature `bindgen`), which ci.sh runs too.
build_deps=(g++ make cmake perl pkg-config dpkg-dev python3 python3-six unicode-data libclang-dev)
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

# apt-get source needs a deb-src entry for bookworm: added (once) before the first download.
deb_src_ready=0
ensure_deb_src() {
  [ "$deb_src_ready" -eq 1 ] && return 0
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
      apt_updated=1
    fi
  fi
  deb_src_ready=1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # apt's download user (_apt) writes there
manifest_of_sources=$dest/third_party/grpcore-vendored-sources.txt

# download PKG: the source package's files (.dsc, .orig.tar.*, .debian.tar.*) into $tmp.
download() {
  ensure_deb_src
  say "downloading Debian's $1 source package"
  (cd "$tmp" && apt-get source --download-only "$1" > /dev/null)
}

# 2. gRPC itself.
if [ -f "$dest/CMakeLists.txt" ] && [ -d "$dest/include/grpc" ]; then
  say "gRPC source already present in $dest"
else
  if [ -e "$dest" ] && [ -n "$(ls -A "$dest" 2> /dev/null)" ]; then
    say "$dest exists but is not a gRPC source tree: remove it and run again" >&2; exit 1
  fi
  download grpc
  orig=$(ls "$tmp"/grpc_*.orig.tar.* | head -1)
  version=$(basename "$orig" | sed -n 's/^grpc_\([0-9.]*\)\.orig\.tar\..*/\1/p')
  case "$version" in
    "$release_series".*) ;;
    *) say "Debian's grpc source is release '$version', not $release_series.x: grpcore-sys's bindings need $release_series.x" >&2; exit 1 ;;
  esac
  # The upstream tarball builds the C core as is. Debian's patches are not applied: they touch
  # the Python and Ruby packaging, the legacy Makefile, the pkg-config install dir, the
  # opencensus-proto download (avoided below by creating the directory) and make cmake use the
  # system's abseil and OpenSSL instead of the bundled ones (the opposite of what the vendored
  # build wants); none changes the C core's code.
  say "unpacking $(basename "$orig") (gRPC $version, upstream source without Debian's patches) into $dest"
  mkdir -p "$dest"
  tar -xf "$orig" -C "$dest" --strip-components=1
  rm -f "$tmp"/grpc_*
  printf 'grpc %s (upstream tarball, Debian patches not applied)\n' "$version" >> "$manifest_of_sources"
fi

# 3. The libraries, each with Debian's patches applied (dpkg-source -x): Debian's security
#    fixes (abseil's CVE-2025-0838, c-ares's CVE-2023-31130, OpenSSL's …) and its build
#    configuration of abseil (the options Debian's own libgrpc was built against).
#    unpack PKG DIR MARKER [VERSION-GLOB]: MARKER is a file that a complete tree has.
unpack() {
  local pkg=$1 dir=$2 marker=$3 want=${4:-*} dsc version
  if [ -f "$dir/$marker" ]; then
    say "$pkg source already present in $dir"
    return 0
  fi
  # gRPC's tarball ships the module directories empty (they are git submodules upstream).
  if [ -d "$dir" ] && [ -z "$(ls -A "$dir")" ]; then rmdir "$dir"; fi
  if [ -e "$dir" ]; then
    say "$dir exists but has no $marker: remove it and run again" >&2; exit 1
  fi
  download "$pkg"
  dsc=$(ls "$tmp/${pkg}_"*.dsc | head -1)
  version=$(sed -n 's/^Version:[[:space:]]*//p' "$dsc" | head -1)
  # shellcheck disable=SC2254 # $want is a glob on purpose
  case "$version" in
    $want) ;;
    *) say "Debian's $pkg source is version '$version'; gRPC $release_series needs $want" >&2; exit 1 ;;
  esac
  say "unpacking $pkg $version (with Debian's patches) into $dir"
  mkdir -p "$(dirname "$dir")"
  dpkg-source --no-check --no-copy -x "$dsc" "$dir" > /dev/null
  rm -f "$tmp/${pkg}_"*
  printf '%s %s\n' "$pkg" "$version" >> "$manifest_of_sources"
}
tp=$dest/third_party
# gRPC 1.51 pins abseil 20220623 (its bundled submodule is 20220623.1) and works with OpenSSL
# 1.1 and 3.x; re2, c-ares and zlib are API-stable across the versions Debian ships.
unpack abseil  "$tp/abseil-cpp"  CMakeLists.txt '20220623*'
unpack re2     "$tp/re2"         CMakeLists.txt
unpack c-ares  "$tp/cares/cares" CMakeLists.txt '1.*'
unpack zlib    "$tp/zlib"        CMakeLists.txt '*1.2.*'
unpack openssl "$tp/openssl"     Configure '3.*'

# 4. What Debian's source packages leave out and their builds regenerate.
#    re2: the generated tables (perl_groups.cc from a Perl script, unicode_*.cc from the
#    Unicode data in /usr/share/unicode: Debian patches re2's generator to read it there).
re2_src=$tp/re2/re2
if [ ! -s "$re2_src/perl_groups.cc" ]; then
  say "generating re2's perl_groups.cc"
  perl "$re2_src/make_perl_groups.pl" > "$re2_src/perl_groups.cc.tmp" && mv "$re2_src/perl_groups.cc.tmp" "$re2_src/perl_groups.cc"
fi
for table in casefold groups; do
  if [ ! -s "$re2_src/unicode_$table.cc" ]; then
    say "generating re2's unicode_$table.cc from /usr/share/unicode"
    # Debian's python3 (the one python3-six is installed for), run from re2's directory.
    (cd "$re2_src" && /usr/bin/python3 "make_unicode_$table.py" > "unicode_$table.cc.tmp") \
      && mv "$re2_src/unicode_$table.cc.tmp" "$re2_src/unicode_$table.cc"
  fi
done
#    zlib: its CMakeLists.txt names win32/zlib1.rc as a source of the shared library target
#    (never built here: gRPC links `zlibstatic`), and Debian's dfsg tarball drops win32/;
#    cmake's configure step only needs the file to exist.
if [ ! -e "$tp/zlib/win32/zlib1.rc" ]; then
  mkdir -p "$tp/zlib/win32"
  : > "$tp/zlib/win32/zlib1.rc"
fi

# 5. gRPC's cmake configure step requires this directory even when nothing uses it.
if [ ! -d "$dest/third_party/opencensus-proto/src" ]; then
  say "creating $dest/third_party/opencensus-proto/src (gRPC's cmake requires it to exist)"
  mkdir -p "$dest/third_party/opencensus-proto/src"
fi

if [ "$dest" = "$here/grpc-src" ]; then
  say "done: cargo build -p grpcore-sys --features vendored now uses $dest"
else
  say "done: set GRPCORE_SYS_GRPC_SOURCE=$dest for cargo build -p grpcore-sys --features vendored"
fi
