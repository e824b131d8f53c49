//! The third-party libraries a statically linked installed core needs (`GRPCORE_SYS_GRPC_LIB_DIR`
//! with `GRPCORE_SYS_STATIC`), linked dynamically from the system. (The `vendored` build links
//! its own static copies instead: vendored.rs.)
//!
//! A static `libgrpc.a`/`libgpr.a` carries no record of what it uses. The pkg-config files that
//! gRPC's cmake configure step writes (`grpc.pc`, `gpr.pc`) do: abseil and OpenSSL as
//! `Requires:` modules, re2, c-ares and zlib as bare `-l` flags. This module reads those files
//! and asks pkg-config (the system's `absl_*.pc`, `openssl.pc`, …) for each dependency.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The core's own archives, in link order (a library before the ones it uses).
pub const CORE_ARCHIVES: [&str; 4] = ["grpc", "address_sorting", "upb", "gpr"];

/// `Requires:` of release 1.51's generated grpc.pc (gpr.pc's list is a subset of it), for an
/// installation that ships no .pc files.
const FALLBACK_REQUIRES: &str =
    "openssl absl_any_invocable absl_base absl_bind_front absl_cleanup \
    absl_cord absl_core_headers absl_flat_hash_map absl_flat_hash_set absl_function_ref absl_hash \
    absl_inlined_vector absl_memory absl_optional absl_random_random absl_span absl_status \
    absl_statusor absl_str_format absl_strings absl_synchronization absl_time absl_type_traits \
    absl_utility absl_variant";
/// The bare `-l` flags of the same grpc.pc, less the core's own archives.
const FALLBACK_LIBS: [&str; 3] = ["re2", "cares", "z"];

/// Prints the cargo link lines for the dependencies listed in `pc_files` (those that exist;
/// with none, the 1.51 lists above), each as a dynamic library, then the C++ runtime.
pub fn link_third_party(pc_files: &[PathBuf]) {
    let mut modules = Vec::new();
    let mut plain_libs = Vec::new();
    let mut read_any = false;
    for pc in pc_files.iter().filter(|p| p.is_file()) {
        let (requires, libs) = read_pc(pc);
        modules.extend(requires);
        plain_libs.extend(libs);
        read_any = true;
    }
    if !read_any {
        modules.extend(FALLBACK_REQUIRES.split_whitespace().map(String::from));
        plain_libs.extend(FALLBACK_LIBS.iter().map(|l| l.to_string()));
    }
    modules.retain(|m| m != "gpr" && m != "grpc");
    plain_libs.retain(|l| !CORE_ARCHIVES.contains(&l.as_str()));

    // Link lines are printed below, deduplicated; the PKG_CONFIG_* variables are tracked once.
    let mut first = true;
    let mut probe = |module: &str| {
        let env_metadata = std::mem::replace(&mut first, false);
        pkg_config::Config::new()
            .cargo_metadata(false)
            .env_metadata(env_metadata)
            .statik(false)
            .probe(module)
    };
    let mut search = Vec::new();
    let mut dylibs = Vec::new();
    for module in dedup(modules) {
        match probe(&module) {
            Ok(lib) => {
                search.extend(lib.link_paths);
                dylibs.extend(lib.libs);
            }
            Err(err) => panic!(
                "\n\ngrpcore-sys: the statically linked gRPC core needs the pkg-config module \
                 `{module}`, which pkg-config could not find: {err}\n\
                 On Debian/Ubuntu run `apt-get install libabsl-dev libssl-dev libre2-dev \
                 libc-ares-dev zlib1g-dev pkg-config`; elsewhere \
                 set PKG_CONFIG_PATH to the directory holding {module}.pc.\n"
            ),
        }
    }
    // re2, c-ares and zlib: through their pkg-config module when there is one, so a copy
    // outside the default paths is found too; else as a bare -l, as grpc.pc names them.
    for lib in dedup(plain_libs) {
        let module = match lib.as_str() {
            "cares" => "libcares",
            "z" => "zlib",
            other => other,
        };
        match probe(module) {
            Ok(found) => {
                search.extend(found.link_paths);
                dylibs.extend(found.libs);
            }
            Err(_) => dylibs.push(lib),
        }
    }
    for dir in dedup(search) {
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
    for lib in dedup(dylibs) {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
    // The core is written in C++.
    println!("cargo:rustc-link-lib=dylib=stdc++");
}

/// The `Requires:` modules and the `-l` libraries of `Libs:` in a .pc file.
pub fn read_pc(path: &Path) -> (Vec<String>, Vec<String>) {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("\n\ngrpcore-sys: cannot read {}: {e}\n", path.display()));
    let mut requires = Vec::new();
    let mut libs = Vec::new();
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("Requires:") {
            // Entries are separated by spaces or commas and may carry version constraints.
            let mut words = value.split([' ', ',']).filter(|w| !w.is_empty());
            while let Some(word) = words.next() {
                if matches!(word, "=" | "<" | ">" | "<=" | ">=" | "!=") {
                    words.next();
                } else {
                    requires.push(word.to_string());
                }
            }
        } else if let Some(value) = line.strip_prefix("Libs:") {
            let flags = value
                .split_whitespace()
                .filter_map(|w| w.strip_prefix("-l"));
            libs.extend(flags.map(String::from));
        }
    }
    (requires, libs)
}

fn dedup<T: Clone + Eq + std::hash::Hash>(items: Vec<T>) -> Vec<T> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|i| seen.insert(i.clone()))
        .collect()
}
