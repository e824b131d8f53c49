//! Feature `vendored`: builds the pinned gRPC C core (release 1.51.x) from a source tree with
//! cmake and links its archives statically.
//!
//! Only the core's own libraries are built here (`libgrpc.a`, `libgpr.a`, `libupb.a`,
//! `libaddress_sorting.a`: everything cmake's `grpc` target produces). The third-party
//! libraries (abseil, OpenSSL, re2, c-ares, zlib; protobuf for the configure step) come from
//! the system as cmake "package" providers and are linked dynamically, exactly as the
//! `grpc.pc`/`gpr.pc` files that gRPC's own configure step generates describe them.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

use super::{deps, env_var, CORE_VERSION, GRPC_RELEASE};

/// Builds the core and prints the cargo link lines; returns the include directories.
pub fn build() -> Vec<PathBuf> {
    println!("cargo:rerun-if-changed=vendored.rs");
    let source = source_dir();
    check_source(&source);
    println!(
        "cargo:rerun-if-changed={}",
        source.join("CMakeLists.txt").display()
    );

    forget_build_of_other_source(&source);

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
    for dep in ["ABSL", "CARES", "PROTOBUF", "RE2", "SSL", "ZLIB"] {
        config.define(format!("gRPC_{dep}_PROVIDER"), "package");
    }
    let out = config.build();
    let build_dir = out.join("build");

    // The core's own archives, statically.
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

    // Their third-party dependencies, dynamically, as gRPC's generated pkg-config files say.
    let pc_dir = build_dir.join("libs/opt/pkgconfig");
    let pc_files = [pc_dir.join("grpc.pc"), pc_dir.join("gpr.pc")];
    if let Some(missing) = pc_files.iter().find(|p| !p.is_file()) {
        panic!(
            "\n\ngrpcore-sys (vendored): gRPC's cmake configure step did not write {}, which \
             lists the libraries the core needs.\n",
            missing.display()
        );
    }
    deps::link_third_party(&pc_files);
    println!("cargo:vendored=1");

    vec![source.join("include")]
}

/// cmake refuses to reuse a build directory configured for another source tree (after
/// GRPCORE_SYS_GRPC_SOURCE changed): start that build afresh.
fn forget_build_of_other_source(source: &Path) {
    let build_dir = PathBuf::from(env::var("OUT_DIR").unwrap()).join("build");
    let cache = fs::read_to_string(build_dir.join("CMakeCache.txt")).unwrap_or_default();
    let configured = cache
        .lines()
        .find_map(|l| l.strip_prefix("CMAKE_HOME_DIRECTORY:INTERNAL="));
    let same = |dir: &str| fs::canonicalize(dir).ok() == fs::canonicalize(source).ok();
    if let Some(dir) = configured.filter(|dir| !same(dir)) {
        println!(
            "cargo:warning=grpcore-sys: the gRPC source changed from {dir} to {}: building the core afresh",
            source.display()
        );
        fs::remove_dir_all(&build_dir)
            .unwrap_or_else(|e| panic!("grpcore-sys: cannot remove {}: {e}", build_dir.display()));
    }
}

/// The gRPC source tree: `GRPCORE_SYS_GRPC_SOURCE`, else `grpc-sys/grpc-src`.
fn source_dir() -> PathBuf {
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
         - run `{}` (Debian/Ubuntu: fetches Debian's gRPC {GRPC_RELEASE} source package with apt \
           into {} and installs cmake and the libraries the build needs)\n\
         - set GRPCORE_SYS_GRPC_SOURCE to a gRPC 1.51.x source tree (with \
           third_party/opencensus-proto/src present, even empty)\n\
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
    let opencensus = source.join("third_party/opencensus-proto/src");
    if !opencensus.is_dir() {
        panic!(
            "\n\ngrpcore-sys (vendored): {} is missing. gRPC's cmake configure step tries to \
             download it when absent, although the C core does not use it.\n\
             Create it: `mkdir -p {}` (grpc-sys/fetch-grpc-source.sh does this).\n",
            opencensus.display(),
            opencensus.display()
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
