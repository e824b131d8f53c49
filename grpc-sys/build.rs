//! Finds (or builds) the gRPC C core and tells cargo how to link it.
//!
//! Order, as in libgit2-sys / libsqlite3-sys:
//! 1. `GRPCORE_SYS_GRPC_LIB_DIR` (+ `GRPCORE_SYS_GRPC_INCLUDE_DIR`): an explicit installation;
//!    `GRPCORE_SYS_STATIC=1` links it statically.
//! 2. feature `vendored`: build the pinned release from source with cmake.
//! 3. pkg-config module `grpc` (Debian/Ubuntu `libgrpc-dev`, Homebrew `grpc`).
//!
//! With feature `bindgen` the bindings are regenerated from the headers found above;
//! otherwise the checked-in `src/bindings.rs` is used.

use std::env;
use std::path::PathBuf;

/// The gRPC release the checked-in bindings were generated from.
const GRPC_RELEASE: &str = "1.51.1";
/// The core version `grpc_version_string()` reports for that release.
const CORE_VERSION: &str = "29.0.0";
/// The pkg-config versions of the `grpc` module accepted: core 29.x (releases 1.51.x), whose
/// ABI the checked-in bindings describe.
const CORE_VERSION_MIN: &str = "29.0";
const CORE_VERSION_END: &str = "30";

fn env_var(name: &str) -> Option<String> {
    println!("cargo:rerun-if-env-changed={name}");
    env::var(name).ok().filter(|v| !v.is_empty())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rustc-env=GRPCORE_SYS_GRPC_RELEASE={GRPC_RELEASE}");
    println!("cargo:rustc-env=GRPCORE_SYS_CORE_VERSION={CORE_VERSION}");

    // The shim first: its archive must come before a static core's on the link line.
    // `cfg(batch_scope)` declares its functions; `batch_scope=1` (DEP_GRPC_BATCH_SCOPE) tells
    // grpcore to use them.
    println!("cargo:rustc-check-cfg=cfg(batch_scope)");
    #[cfg(any(feature = "batch-scope", feature = "vendored"))]
    if let Some(linked) = batch_scope_linked() {
        batch_scope::build(&linked);
        println!("cargo:rustc-cfg=batch_scope");
        println!("cargo:batch_scope=1");
    }
    let include_dirs = if let Some(lib_dir) = env_var("GRPCORE_SYS_GRPC_LIB_DIR") {
        link_explicit(&lib_dir)
    } else if cfg!(feature = "vendored") {
        vendored::build()
    } else {
        link_pkg_config()
    };
    for dir in &include_dirs {
        println!("cargo:include={}", dir.display());
    }
    generate_bindings(&include_dirs);
}

/// Links a core installed at an explicit location.
fn link_explicit(lib_dir: &str) -> Vec<PathBuf> {
    let statik = env_var("GRPCORE_SYS_STATIC").is_some_and(|v| v != "0");
    check_explicit_version(lib_dir);
    println!("cargo:rustc-link-search=native={lib_dir}");
    let kind = if statik { "static" } else { "dylib" };
    for lib in ["grpc", "gpr"] {
        println!("cargo:rustc-link-lib={kind}={lib}");
    }
    if statik {
        for lib in ["upb", "address_sorting"] {
            println!("cargo:rustc-link-lib=static={lib}");
        }
        // What the archives need from the system (abseil, OpenSSL, re2, c-ares, zlib, C++),
        // dynamically, as the installation's grpc.pc/gpr.pc list it.
        let pc_dir = PathBuf::from(lib_dir).join("pkgconfig");
        deps::link_third_party(&[pc_dir.join("grpc.pc"), pc_dir.join("gpr.pc")]);
    }
    env_var("GRPCORE_SYS_GRPC_INCLUDE_DIR")
        .map(PathBuf::from)
        .into_iter()
        .collect()
}

/// When the explicit installation carries a `pkgconfig/grpc.pc`, its version must be a core
/// 29.x too (a cmake build directory has none; grpcore then checks `grpc_version_string()`
/// when it first initialises the core).
fn check_explicit_version(lib_dir: &str) {
    let pc = PathBuf::from(lib_dir).join("pkgconfig").join("grpc.pc");
    let Ok(text) = std::fs::read_to_string(&pc) else { return };
    println!("cargo:rerun-if-changed={}", pc.display());
    let Some(version) = text.lines().find_map(|l| l.strip_prefix("Version:")).map(str::trim) else { return };
    let major = version.split('.').next().and_then(|m| m.parse::<u32>().ok());
    if major != Some(29) {
        panic!(
            "\n\ngrpcore-sys: GRPCORE_SYS_GRPC_LIB_DIR={lib_dir} holds gRPC core version {version} ({}), \
             but the checked-in bindings describe core 29.x only (gRPC release {GRPC_RELEASE}, core {CORE_VERSION}).\n\
             Point GRPCORE_SYS_GRPC_LIB_DIR at a 1.51.x installation, or unset it and use libgrpc-dev 1.51 \
             (pkg-config) or the `vendored` feature.\n",
            pc.display()
        );
    }
}

/// Finds the system core with pkg-config.
fn link_pkg_config() -> Vec<PathBuf> {
    let statik = env_var("GRPCORE_SYS_STATIC").is_some_and(|v| v != "0");
    // Pinned to the core version the checked-in bindings describe: grpcore reads some of the
    // core's structs directly (grpc_byte_buffer, grpc_slice), so a later major version is
    // not merely "newer", it is a different ABI (as libgit2-sys pins its range).
    match pkg_config::Config::new()
        .range_version(CORE_VERSION_MIN..CORE_VERSION_END)
        .statik(statik)
        .probe("grpc")
    {
        Ok(lib) => {
            if statik {
                // grpc.pc does not name the C++ runtime a static core needs (a dynamic one
                // records it itself). pkg-config links libraries in system directories
                // dynamically even then; this line is harmless for those.
                println!("cargo:rustc-link-lib=dylib=stdc++");
            }
            lib.include_paths
        }
        Err(err) => panic!(
            "\n\ngrpcore-sys: could not find a usable gRPC C core: it needs release {GRPC_RELEASE} \
             (core version {CORE_VERSION}; any core 29.x, i.e. gRPC 1.51.x).\n\
             Looked for the pkg-config module `grpc` with version >= {CORE_VERSION_MIN} and < {CORE_VERSION_END}: {err}\n\n\
             The checked-in bindings describe core 29.x only, so a newer or older libgrpc-dev cannot be used \
             as it is. Fix it with one of:\n\
             - Debian 12 / Ubuntu with gRPC 1.51: `apt-get install libgrpc-dev pkg-config`\n\
             - set PKG_CONFIG_PATH to the directory holding grpc.pc of a 1.51.x installation\n\
             - set GRPCORE_SYS_GRPC_LIB_DIR (and GRPCORE_SYS_GRPC_INCLUDE_DIR) to an installed 1.51.x core\n\
             - enable the `vendored` feature to build the pinned core from source (needs cmake; see grpc-sys/README.md)\n\
             (`pkg-config --modversion grpc` prints the version installed.)\n"
        ),
    }
}

mod deps;

#[cfg(any(feature = "batch-scope", feature = "vendored"))]
mod batch_scope;

/// What the `batch-scope` shim must know of the core that will be linked: found the way
/// `main` finds the core, without printing link lines yet. `None` when pkg-config finds no
/// core (`link_pkg_config` then explains).
#[cfg(any(feature = "batch-scope", feature = "vendored"))]
fn batch_scope_linked() -> Option<batch_scope::Linked> {
    let statik = env_var("GRPCORE_SYS_STATIC").is_some_and(|v| v != "0");
    let asked = cfg!(feature = "batch-scope");
    if let Some(lib_dir) = env_var("GRPCORE_SYS_GRPC_LIB_DIR") {
        if !asked {
            // `vendored` alone: the explicit core wins over the vendored one, and the vendored
            // source is not that core's, so no shim (grpcore then starts each batch alone).
            println!(
                "cargo:warning=grpcore-sys: GRPCORE_SYS_GRPC_LIB_DIR overrides `vendored`: built without the \
                 batch-scope shim (enable feature `batch-scope` with GRPCORE_SYS_GRPC_SOURCE to keep it)"
            );
            return None;
        }
        let pc = PathBuf::from(&lib_dir).join("pkgconfig").join("grpc.pc");
        let core_version = std::fs::read_to_string(pc)
            .ok()
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix("Version:")).map(|v| v.trim().to_string()));
        return Some(batch_scope::Linked {
            core_version,
            ndebug: batch_scope::ndebug_of(&batch_scope::find_library(&[PathBuf::from(lib_dir)], statik)),
            source: batch_scope::installed_source(),
            extra_includes: Vec::new(),
        });
    }
    if cfg!(feature = "vendored") {
        // Built from this very tree (whose core version `vendored` checks) in cmake's
        // Release configuration, which defines NDEBUG, with the tree's own abseil.
        let source = vendored::source_dir();
        return Some(batch_scope::Linked {
            core_version: Some(CORE_VERSION.to_string()),
            ndebug: true,
            extra_includes: vec![source.join("third_party/abseil-cpp")],
            source,
        });
    }
    let lib = pkg_config::Config::new()
        .range_version(CORE_VERSION_MIN..CORE_VERSION_END)
        .statik(statik)
        .cargo_metadata(false)
        .env_metadata(false)
        .probe("grpc")
        .ok()?;
    let mut dirs = lib.link_paths.clone();
    // pkg-config leaves the system library directory out of `--libs`; its `libdir` says it.
    if let Ok(libdir) = pkg_config::get_variable("grpc", "libdir") {
        dirs.push(PathBuf::from(libdir));
    }
    Some(batch_scope::Linked {
        core_version: Some(lib.version),
        ndebug: batch_scope::ndebug_of(&batch_scope::find_library(&dirs, statik)),
        source: batch_scope::installed_source(),
        extra_includes: Vec::new(),
    })
}

#[cfg(not(feature = "vendored"))]
mod vendored {
    pub fn build() -> Vec<std::path::PathBuf> {
        unreachable!("the vendored build is only compiled with the `vendored` feature")
    }
    #[cfg(any(feature = "batch-scope", feature = "vendored"))]
    pub fn source_dir() -> std::path::PathBuf {
        unreachable!("the vendored source is only looked for with the `vendored` feature")
    }
}

#[cfg(feature = "vendored")]
mod vendored;

#[cfg(not(feature = "bindgen"))]
fn generate_bindings(_include_dirs: &[PathBuf]) {}

/// Regenerates the bindings into `OUT_DIR/bindings.rs` (and, when
/// `GRPCORE_SYS_BINDINGS_OUT` is set, to that path too: `regen-bindings.sh` uses it).
#[cfg(feature = "bindgen")]
fn generate_bindings(include_dirs: &[PathBuf]) {
    let mut builder = bindgen::Builder::default()
        .header("wrapper.h")
        .allowlist_function("grpc_.*|gpr_.*")
        .allowlist_type("grpc_.*|gpr_.*")
        .allowlist_var("GRPC_.*|GPR_.*")
        // Enums stay integers: a value these bindings did not know is then never UB.
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .blocklist_function("gpr_log_severity_string|gpr_assertion_failed")
        .blocklist_item("grpc_event_engine.*")
        .size_t_is_usize(true)
        .layout_tests(false)
        .derive_default(true)
        .generate_comments(false)
        .formatter(bindgen::Formatter::Rustfmt)
        .raw_line("// Generated by bindgen from grpc-sys/wrapper.h against the gRPC C core; do not edit.")
        .raw_line("// Regenerate with grpc-sys/regen-bindings.sh.");
    for dir in include_dirs {
        builder = builder.clang_arg(format!("-I{}", dir.display()));
    }
    let bindings = builder
        .generate()
        .unwrap_or_else(|e| panic!("grpcore-sys: bindgen failed on wrapper.h: {e}. Is libclang-dev installed?"));
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("bindings.rs");
    bindings.write_to_file(&out).expect("write OUT_DIR/bindings.rs");
    if let Some(copy_to) = env_var("GRPCORE_SYS_BINDINGS_OUT") {
        std::fs::copy(&out, &copy_to).unwrap_or_else(|e| panic!("copy bindings to {copy_to}: {e}"));
    }
}
