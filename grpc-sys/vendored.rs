//! Feature `vendored`: builds the pinned gRPC C core (release 1.51.x) and every library it
//! uses from source, and links them all statically.
//!
//! The source tree (`fetch-grpc-source.sh` makes one from Debian's source packages) holds gRPC
//! with abseil, re2, c-ares and zlib where gRPC's cmake "module" providers look for them
//! (`third_party/abseil-cpp`, `re2`, `cares/cares`, `zlib`), and OpenSSL in
//! `third_party/openssl`. OpenSSL is built first with its own Configure and make (static
//! `libssl.a`/`libcrypto.a`, installed into `OUT_DIR/openssl`), then gRPC's cmake builds its
//! `grpc` target, which compiles only the parts of abseil, re2, c-ares and zlib the core uses,
//! against that OpenSSL (cmake "package" provider pointed at it). protobuf is not looked for:
//! the C core does not use it. Every archive is linked statically; what remains dynamic is the
//! C and C++ runtime (libc, libm, libstdc++, libgcc_s).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::{deps, env_var, CORE_VERSION, GRPC_RELEASE};

/// The libraries the source tree must hold besides gRPC: (what, directory under the tree, a
/// file a complete copy has).
const THIRD_PARTY: [(&str, &str, &str); 7] = [
    ("abseil", "third_party/abseil-cpp", "CMakeLists.txt"),
    ("re2", "third_party/re2", "CMakeLists.txt"),
    ("re2's generated tables", "third_party/re2", "re2/unicode_groups.cc"),
    ("c-ares", "third_party/cares/cares", "CMakeLists.txt"),
    ("zlib", "third_party/zlib", "CMakeLists.txt"),
    ("OpenSSL", "third_party/openssl", "Configure"),
    ("the (empty) opencensus-proto directory", "third_party/opencensus-proto/src", ""),
];

/// Builds the core and its dependencies and prints the cargo link lines; returns the include
/// directories.
pub fn build() -> Vec<PathBuf> {
    println!("cargo:rerun-if-changed=vendored.rs");
    let source = source_dir();
    check_source(&source);
    println!(
        "cargo:rerun-if-changed={}",
        source.join("CMakeLists.txt").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        source.join("third_party/grpcore-vendored-sources.txt").display()
    );

    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    forget_build_of_other_source(&source, &out_dir);
    let started = Instant::now();
    let openssl = build_openssl(&source.join("third_party/openssl"), &out_dir);
    println!("grpcore-sys: OpenSSL ready after {:.0?}", started.elapsed());
    let started = Instant::now();

    let mut config = cmake::Config::new(&source);
    config
        // Only the C core: no install step, no C++ library, no tests, no protoc plugins.
        .build_target("grpc")
        // The core is the engine under every call: build it optimised even when the Rust
        // code is a debug build.
        .profile("Release")
        .define("BUILD_SHARED_LIBS", "OFF")
        .define("CMAKE_POSITION_INDEPENDENT_CODE", "ON")
        .define("gRPC_INSTALL", "OFF")
        .define("gRPC_BUILD_TESTS", "OFF")
        .define("gRPC_BUILD_CODEGEN", "OFF")
        .define("gRPC_BUILD_CSHARP_EXT", "OFF")
        .define("gRPC_BACKWARDS_COMPATIBILITY_MODE", "OFF");
    for plugin in [
        "CPP",
        "CSHARP",
        "NODE",
        "OBJECTIVE_C",
        "PHP",
        "PYTHON",
        "RUBY",
    ] {
        config.define(format!("gRPC_BUILD_GRPC_{plugin}_PLUGIN"), "OFF");
    }
    // abseil, re2, c-ares and zlib: built by gRPC's cmake from third_party/ ("module"),
    // as static libraries, only what the `grpc` target needs.
    for dep in ["ABSL", "CARES", "RE2", "ZLIB"] {
        config.define(format!("gRPC_{dep}_PROVIDER"), "module");
    }
    config
        .define("ABSL_PROPAGATE_CXX_STD", "ON")
        .define("RE2_BUILD_TESTING", "OFF")
        .define("BUILD_TESTING", "OFF")
        // OpenSSL: the static build above, through cmake's FindOpenSSL ("package"), with every
        // path given so that the system's OpenSSL is never picked.
        .define("gRPC_SSL_PROVIDER", "package")
        .define("OPENSSL_USE_STATIC_LIBS", "TRUE")
        .define("OPENSSL_ROOT_DIR", &openssl)
        .define("OPENSSL_INCLUDE_DIR", openssl.join("include"))
        .define("OPENSSL_SSL_LIBRARY", openssl.join("lib/libssl.a"))
        .define("OPENSSL_CRYPTO_LIBRARY", openssl.join("lib/libcrypto.a"))
        // protobuf: neither "module" nor "package", so configure looks for none; the C core
        // does not use it (only the C++ codegen targets, which are not built).
        .define("gRPC_PROTOBUF_PROVIDER", "none");
    let out = config.build();
    println!("grpcore-sys: cmake target `grpc` ready after {:.0?}", started.elapsed());
    let build_dir = out.join("build");

    // The core's own archives, in link order.
    println!("cargo:rustc-link-search=native={}", build_dir.display());
    for lib in deps::CORE_ARCHIVES {
        let archive = build_dir.join(format!("lib{lib}.a"));
        if !archive.is_file() {
            panic!(
                "\n\ngrpcore-sys (vendored): the cmake target `grpc` did not produce {}.\n\
                 The build directory {} holds: {}\n",
                archive.display(),
                build_dir.display(),
                list_archives(&build_dir)
            );
        }
        println!("cargo:rustc-link-lib=static={lib}");
    }
    // Then every archive cmake built from third_party/ for them (abseil's absl_*, re2, cares,
    // z). Each is bundled into this crate's rlib, which the final link reads as one archive:
    // the linker resolves references among its members in any order, so the order of these
    // lines does not matter (abseil's libraries reference each other in cycles).
    let third_party = third_party_archives(&build_dir.join("third_party"));
    let mut search: Vec<&PathBuf> = third_party.iter().map(|(_, dir)| dir).collect();
    search.sort();
    search.dedup();
    for dir in search {
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
    for (name, _) in &third_party {
        println!("cargo:rustc-link-lib=static={name}");
    }
    for lib in ["z", "re2", "cares", "absl_base"] {
        if !third_party.iter().any(|(name, _)| name == lib) {
            panic!(
                "\n\ngrpcore-sys (vendored): gRPC's cmake build did not produce lib{lib}.a under {}; \
                 found: {}\n",
                build_dir.join("third_party").display(),
                third_party.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    println!("cargo:rustc-link-search=native={}", openssl.join("lib").display());
    println!("cargo:rustc-link-lib=static=ssl");
    println!("cargo:rustc-link-lib=static=crypto");
    // The core, abseil and re2 are C++; the C++ runtime stays a shared library, as libc does.
    println!("cargo:rustc-link-lib=dylib=stdc++");
    println!("cargo:vendored=1");

    vec![source.join("include")]
}

/// Builds OpenSSL's static libraries from `src` (out of tree, in `OUT_DIR/openssl-build`) and
/// installs them with their headers into `OUT_DIR/openssl`, which it returns. Skipped when an
/// earlier run of this build script did so from the same source.
fn build_openssl(src: &Path, out_dir: &Path) -> PathBuf {
    let prefix = out_dir.join("openssl");
    let build = out_dir.join("openssl-build");
    let stamp = prefix.join("grpcore-sys-built-from");
    let wanted = format!("{}\n", src.display());
    let installed = ["lib/libssl.a", "lib/libcrypto.a", "include/openssl/opensslv.h"]
        .iter()
        .all(|f| prefix.join(f).is_file());
    if installed && fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return prefix;
    }
    for dir in [&prefix, &build] {
        if dir.exists() {
            fs::remove_dir_all(dir)
                .unwrap_or_else(|e| panic!("grpcore-sys: cannot remove {}: {e}", dir.display()));
        }
    }
    fs::create_dir_all(&build)
        .unwrap_or_else(|e| panic!("grpcore-sys: cannot create {}: {e}", build.display()));

    let target = env::var("TARGET").unwrap();
    let Some(openssl_target) = openssl_target(&target) else {
        panic!(
            "\n\ngrpcore-sys (vendored): no OpenSSL Configure target is known for the Rust target \
             {target}; the vendored build supports x86_64, aarch64, i686, riscv64, powerpc64le and \
             s390x Linux (glibc). Link an installed core with GRPCORE_SYS_GRPC_LIB_DIR instead.\n"
        );
    };
    let jobs = env::var("NUM_JOBS").unwrap_or_else(|_| "1".into());
    let mut configure = Command::new("perl");
    configure
        .current_dir(&build)
        .arg(src.join("Configure"))
        .arg(openssl_target)
        // Static libraries only (compiled position-independent: OpenSSL's default), no tests.
        .args(["no-shared", "no-tests"])
        .arg(format!("--prefix={}", prefix.display()))
        .arg("--libdir=lib")
        // Where it looks for openssl.cnf and the default CA directory: Debian's (and its
        // derivatives'), so the system-wide OpenSSL settings apply as they do to libssl3.
        .arg("--openssldir=/usr/lib/ssl");
    run(&mut configure, "OpenSSL's Configure");
    let mut make = Command::new("make");
    make.current_dir(&build)
        .arg(format!("-j{jobs}"))
        .arg("build_libs")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS");
    run(&mut make, "make build_libs (OpenSSL)");
    let mut install = Command::new("make");
    install
        .current_dir(&build)
        .arg("install_dev")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS");
    run(&mut install, "make install_dev (OpenSSL)");
    fs::write(&stamp, wanted)
        .unwrap_or_else(|e| panic!("grpcore-sys: cannot write {}: {e}", stamp.display()));
    prefix
}

/// OpenSSL's Configure target for a Rust target triple (Linux with glibc).
fn openssl_target(rust_target: &str) -> Option<&'static str> {
    let arch = rust_target.split('-').next()?;
    if !rust_target.contains("-linux-gnu") {
        return None;
    }
    Some(match arch {
        "x86_64" => "linux-x86_64",
        "aarch64" => "linux-aarch64",
        "i686" | "i586" => "linux-elf",
        "riscv64gc" => "linux64-riscv64",
        "powerpc64le" => "linux-ppc64le",
        "s390x" => "linux64-s390x",
        _ => return None,
    })
}

/// Runs a build command, its output going to cargo's build log; panics with what failed.
fn run(command: &mut Command, what: &str) {
    println!("running: {command:?}");
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("\n\ngrpcore-sys (vendored): cannot run {what} ({command:?}): {e}\n"));
    if !status.success() {
        panic!(
            "\n\ngrpcore-sys (vendored): {what} failed ({status}): {command:?}\n\
             Its output is above in this build script's log.\n"
        );
    }
}

/// The static archives under `dir` (recursively): (library name without `lib` and `.a`, its
/// directory), sorted by name.
fn third_party_archives(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(name) = file.strip_prefix("lib").and_then(|f| f.strip_suffix(".a")) {
                found.push((name.to_string(), dir.clone()));
            }
        }
    }
    found.sort();
    found.dedup_by(|a, b| a.0 == b.0);
    found
}

/// cmake refuses to reuse a build directory configured for another source tree (after
/// GRPCORE_SYS_GRPC_SOURCE changed), and one that an older grpcore-sys configured to take
/// abseil, re2, c-ares, zlib and OpenSSL from the system would keep them: start those afresh.
fn forget_build_of_other_source(source: &Path, out_dir: &Path) {
    let build_dir = out_dir.join("build");
    let Ok(cache) = fs::read_to_string(build_dir.join("CMakeCache.txt")) else { return };
    let configured = cache
        .lines()
        .find_map(|l| l.strip_prefix("CMAKE_HOME_DIRECTORY:INTERNAL="));
    let same = |dir: &str| fs::canonicalize(dir).ok() == fs::canonicalize(source).ok();
    let why = match configured {
        Some(dir) if !same(dir) => format!("the gRPC source changed from {dir} to {}", source.display()),
        _ if cache.contains("gRPC_ABSL_PROVIDER:STRING=package") => {
            "the build directory holds a core configured against the system's libraries".to_string()
        }
        _ => return,
    };
    println!("cargo:warning=grpcore-sys: {why}: building the core afresh");
    fs::remove_dir_all(&build_dir)
        .unwrap_or_else(|e| panic!("grpcore-sys: cannot remove {}: {e}", build_dir.display()));
}

/// The gRPC source tree: `GRPCORE_SYS_GRPC_SOURCE`, else `grpc-sys/grpc-src`.
pub fn source_dir() -> PathBuf {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let fetch = manifest_dir.join("fetch-grpc-source.sh");
    if let Some(dir) = env_var("GRPCORE_SYS_GRPC_SOURCE") {
        let dir = PathBuf::from(dir);
        if !dir.join("CMakeLists.txt").is_file() {
            panic!(
                "\n\ngrpcore-sys (vendored): GRPCORE_SYS_GRPC_SOURCE={} is not a gRPC source tree \
                 (no CMakeLists.txt there).\n\
                 Fetch gRPC {GRPC_RELEASE} into it with `{} {}`, or unset the variable.\n",
                dir.display(),
                fetch.display(),
                dir.display()
            );
        }
        return dir;
    }
    let default = manifest_dir.join("grpc-src");
    if default.join("CMakeLists.txt").is_file() {
        return default;
    }
    panic!(
        "\n\ngrpcore-sys: the `vendored` feature builds the gRPC C core (release {GRPC_RELEASE}) \
         from source, and no source tree was found.\n\
         Looked at: the environment variable GRPCORE_SYS_GRPC_SOURCE (unset), then {} (missing).\n\n\
         Fix it with one of:\n\
         - run `{}` (Debian/Ubuntu: fetches Debian's source packages of gRPC {GRPC_RELEASE}, \
           abseil, re2, c-ares, zlib and OpenSSL with apt into {} and installs cmake and the \
           tools the build needs)\n\
         - set GRPCORE_SYS_GRPC_SOURCE to a gRPC 1.51.x source tree laid out as that script \
           lays it out (see grpc-sys/README.md)\n\
         - build without the `vendored` feature to link the system core found with pkg-config \
           (`apt-get install libgrpc-dev`)\n",
        default.display(),
        fetch.display(),
        default.display()
    );
}

/// Refuses a tree of another release, and one whose configure step would try to download.
fn check_source(source: &Path) {
    let cmake_lists = fs::read_to_string(source.join("CMakeLists.txt")).unwrap_or_default();
    let release = cmake_set(&cmake_lists, "PACKAGE_VERSION");
    let core = cmake_set(&cmake_lists, "gRPC_CORE_VERSION");
    let series = GRPC_RELEASE
        .rsplit_once('.')
        .map_or(GRPC_RELEASE, |(s, _)| s);
    let release_ok = release.as_deref().is_some_and(|r| {
        r.strip_prefix(series)
            .is_some_and(|rest| rest.starts_with('.'))
    });
    if !release_ok || core.as_deref() != Some(CORE_VERSION) {
        panic!(
            "\n\ngrpcore-sys (vendored): {} is gRPC {} (core {}), but these bindings are for \
             gRPC {series}.x (core {CORE_VERSION}).\n\
             Point GRPCORE_SYS_GRPC_SOURCE at a {series}.x tree (grpc-sys/fetch-grpc-source.sh fetches one).\n",
            source.display(),
            release.as_deref().unwrap_or("of unknown release"),
            core.as_deref().unwrap_or("unknown"),
        );
    }
    let missing: Vec<String> = THIRD_PARTY
        .iter()
        .filter(|(_, dir, marker)| !source.join(dir).join(marker).exists())
        .map(|(what, dir, marker)| format!("- {what}: {}", source.join(dir).join(marker).display()))
        .collect();
    if !missing.is_empty() {
        panic!(
            "\n\ngrpcore-sys (vendored): the source tree {} lacks what the static build needs:\n{}\n\
             The vendored core is built with its libraries (abseil, re2, c-ares, zlib, OpenSSL) \
             from source, in the source tree's third_party/ directory. Add them with \
             `grpc-sys/fetch-grpc-source.sh {}` (Debian/Ubuntu: Debian's source packages, with \
             apt; safe on a tree that already holds gRPC).\n",
            source.display(),
            missing.join("\n"),
            source.display()
        );
    }
}

/// The value of `set(NAME "value")` in a CMakeLists.txt.
fn cmake_set(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("set(")?.trim_start();
        let rest = rest.strip_prefix(name)?;
        if !rest.starts_with(char::is_whitespace) {
            return None;
        }
        Some(
            rest.trim()
                .trim_end_matches(')')
                .trim()
                .trim_matches('"')
                .to_string(),
        )
    })
}

fn list_archives(dir: &Path) -> String {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".a"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    if names.is_empty() {
        "no archives".to_string()
    } else {
        names.join(", ")
    }
}
