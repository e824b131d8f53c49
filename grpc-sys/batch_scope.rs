//! Feature `batch-scope`: compiles `shim/batch_scope.cc` against the core's internal headers.
//!
//! The shim reaches into the core's C++ internals (`grpc_core::ExecCtx`, `grpc_closure`,
//! `grpc_cq_completion`, `grpc_call_start_batch_and_execute`), whose layouts and signatures
//! belong to one release. So it is compiled only against the source tree of the very core
//! that is linked, and only when two facts agree:
//! - the source tree's `gRPC_CORE_VERSION` (its CMakeLists.txt) is the linked library's core
//!   version (pkg-config's version for the system core; the vendored core is built from the
//!   tree itself);
//! - `NDEBUG` is set as the library was built: it adds fields to `grpc_closure`, which the
//!   shim allocates and the core fills. A core built without `NDEBUG` exports the debug
//!   signature of `grpc_cq_internal_ref` (`(cq, reason, file, line)`), one built with it the
//!   one-argument signature; the library file is searched for those symbol names.

use std::fs;
use std::path::{Path, PathBuf};

use super::{env_var, CORE_VERSION, GRPC_RELEASE};

/// The library that will be linked, as far as the shim needs to know it.
pub struct Linked {
    /// The core version the library reports (`29.0.0`), when known.
    pub core_version: Option<String>,
    /// Whether the library was compiled with `NDEBUG`.
    pub ndebug: bool,
    /// The core source tree whose headers the shim is compiled against.
    pub source: PathBuf,
    /// Extra include directories (the vendored build's abseil).
    pub extra_includes: Vec<PathBuf>,
}

/// Mangled name of `grpc_cq_internal_ref(grpc_completion_queue*, const char*, const char*, int)`,
/// exported only by a core built without `NDEBUG`.
const DEBUG_SYMBOL: &[u8] = b"_Z20grpc_cq_internal_refP21grpc_completion_queuePKcS2_i";
/// Mangled name of `grpc_cq_internal_ref(grpc_completion_queue*)` (with `NDEBUG`), NUL-ended.
const RELEASE_SYMBOL: &[u8] = b"_Z20grpc_cq_internal_refP21grpc_completion_queue\0";

/// The source tree for a build against an installed core: `GRPCORE_SYS_GRPC_SOURCE`, required.
pub fn installed_source() -> PathBuf {
    let fetch = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("fetch-grpc-source.sh");
    match env_var("GRPCORE_SYS_GRPC_SOURCE") {
        Some(dir) => PathBuf::from(dir),
        None => panic!(
            "\n\ngrpcore-sys: the `batch-scope` feature (grpcore's `shared-writes`) compiles a small C++ \
             shim against the gRPC core's INTERNAL headers, which no libgrpc-dev package installs.\n\
             Set GRPCORE_SYS_GRPC_SOURCE to the source tree of exactly the installed core (gRPC {GRPC_RELEASE}, \
             core {CORE_VERSION}): `{} DIR` fetches Debian's source package of it with apt.\n\
             Or build with the `vendored` feature, whose source tree is used, or turn the feature off.\n",
            fetch.display()
        ),
    }
}

/// Reads `NDEBUG` off a core library file (shared object or archive).
pub fn ndebug_of(lib: &Path) -> bool {
    println!("cargo:rerun-if-changed={}", lib.display());
    let bytes = fs::read(lib).unwrap_or_else(|e| {
        panic!("\n\ngrpcore-sys (batch-scope): cannot read the core library {} to check how it was built: {e}\n", lib.display())
    });
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    if has(DEBUG_SYMBOL) {
        false
    } else if has(RELEASE_SYMBOL) {
        true
    } else {
        panic!(
            "\n\ngrpcore-sys (batch-scope): {} exports neither form of grpc_cq_internal_ref, so whether it was \
             built with NDEBUG (which changes the layout of grpc_closure the shim allocates) is unknown. \
             Is it a gRPC {GRPC_RELEASE} core? Turn the `batch-scope` feature off for this library.\n",
            lib.display()
        )
    }
}

/// The core library file in `dirs` (`libgrpc.so` or `libgrpc.a`).
pub fn find_library(dirs: &[PathBuf], statik: bool) -> PathBuf {
    let name = if statik { "libgrpc.a" } else { "libgrpc.so" };
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "\n\ngrpcore-sys (batch-scope): no {name} in {:?}; the shim must inspect the library it is linked \
                 with (see grpc-sys/README.md).\n",
                dirs
            )
        })
}

/// Checks the source against the library and compiles the shim (printing its link lines:
/// call this before the core's own link lines, so a static core comes after the shim).
pub fn build(linked: &Linked) {
    println!("cargo:rerun-if-changed=shim/batch_scope.cc");
    println!("cargo:rerun-if-changed=batch_scope.rs");
    let source = &linked.source;
    let cmake_lists = source.join("CMakeLists.txt");
    println!("cargo:rerun-if-changed={}", cmake_lists.display());
    let text = fs::read_to_string(&cmake_lists).unwrap_or_else(|e| {
        panic!(
            "\n\ngrpcore-sys (batch-scope): {} is not a gRPC source tree ({}: {e}). Point GRPCORE_SYS_GRPC_SOURCE \
             at the source of the linked core (gRPC {GRPC_RELEASE}, core {CORE_VERSION}).\n",
            source.display(),
            cmake_lists.display()
        )
    });
    let source_core = cmake_value(&text, "gRPC_CORE_VERSION");
    let source_release = cmake_value(&text, "PACKAGE_VERSION");
    match &linked.core_version {
        Some(lib_core) if source_core.as_deref() != Some(lib_core.as_str()) => panic!(
            "\n\ngrpcore-sys (batch-scope): the core source {} is core {} (gRPC {}), but the linked library is core \
             {lib_core}. The shim uses the core's internal C++ layouts, which change between releases: point \
             GRPCORE_SYS_GRPC_SOURCE at the source of exactly the linked release.\n",
            source.display(),
            source_core.as_deref().unwrap_or("of unknown version"),
            source_release.as_deref().unwrap_or("unknown")
        ),
        Some(_) => {}
        None => println!(
            "cargo:warning=grpcore-sys (batch-scope): the linked core's version is unknown (no grpc.pc); the shim is \
             compiled against core {} from {} unchecked",
            source_core.as_deref().unwrap_or("?"),
            source.display()
        ),
    }
    if source_release.as_deref() != Some(GRPC_RELEASE) {
        panic!(
            "\n\ngrpcore-sys (batch-scope): the core source {} is gRPC {}, but this crate binds gRPC {GRPC_RELEASE} \
             exactly (the shim is checked against its internals only).\n",
            source.display(),
            source_release.as_deref().unwrap_or("of unknown release")
        );
    }
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .file("shim/batch_scope.cc")
        .include(source)
        .include(source.join("include"))
        .include(source.join("third_party/upb"))
        .include(source.join("src/core/ext/upb-generated"))
        .warnings(false);
    for dir in &linked.extra_includes {
        build.include(dir);
    }
    if linked.ndebug {
        build.define("NDEBUG", None);
    }
    build.compile("grpcore_batch_scope");
    println!("cargo:batch_scope=1");
}

/// The value of `set(NAME "value")` in a CMakeLists.txt.
fn cmake_value(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("set(")?.trim_start().strip_prefix(name)?;
        rest.starts_with(char::is_whitespace)
            .then(|| rest.trim().trim_end_matches(')').trim().trim_matches('"').to_string())
    })
}
