//! Code that grpcore commits from this compiler's output stays what the compiler writes
//! today: the reflection and channelz protocols' messages and services
//! (src/reflection/, src/channelz/, src/health/ and src/admin/: generated/ from the proto/
//! beside it). After a change to the compiler or to the proto, rewrite them with
//! `GRPCORE_BLESS=1 cargo test -p grpcore-compiler --test committed` and review the diff.
//!
//! grpcore cannot run the compiler from a build script of its own (every user would need
//! protoc), so it keeps the output in the repository; this test is what keeps the two in step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn read_dir(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().into_string().unwrap(), std::fs::read_to_string(e.path()).unwrap())
        })
        .collect()
}

#[test]
fn reflection_code_is_up_to_date() {
    // The descriptors a server sends are `Bytes` shared with the generated code's statics.
    check("src/reflection", &["grpc/reflection/v1/reflection.proto"], |config| {
        config.bytes(["."]);
    });
}

#[test]
fn channelz_code_is_up_to_date() {
    check("src/channelz", &["grpc/channelz/v1/channelz.proto"], |_| {});
}

#[test]
fn health_code_is_up_to_date() {
    check("src/health", &["grpc/health/v1/health.proto"], |_| {});
}

#[test]
fn admin_code_is_up_to_date() {
    check("src/admin", &["grpcore/admin/v1/core_trace.proto", "grpcore/admin/v1/xds_config.proto"], |_| {});
}

/// Compiles `<dir>/proto/<protos>` as grpcore compiles its own protocols and compares the
/// output with `<dir>/generated/` (or rewrites it, with `GRPCORE_BLESS=1`).
fn check(dir: &str, protos: &[&str], prost: impl Fn(&mut prost_build::Config) + 'static) {
    let include = repo(&format!("{dir}/proto"));
    let committed = repo(&format!("{dir}/generated"));
    let out = tempfile::tempdir().unwrap();
    grpcore_compiler::configure()
        .grpcore_path("crate")
        .configure_prost(prost)
        .out_dir(out.path())
        .emit_rerun_if_changed(false)
        .compile(&protos.iter().map(|p| include.join(p)).collect::<Vec<_>>(), &[&include])
        .unwrap();
    let fresh = read_dir(out.path());
    if std::env::var_os("GRPCORE_BLESS").is_some() {
        let _ = std::fs::remove_dir_all(&committed);
        std::fs::create_dir_all(&committed).unwrap();
        for (name, content) in &fresh {
            std::fs::write(committed.join(name), content).unwrap();
        }
        return;
    }
    let old = read_dir(&committed);
    assert_eq!(
        old.keys().collect::<Vec<_>>(),
        fresh.keys().collect::<Vec<_>>(),
        "{} holds other files than the compiler writes (GRPCORE_BLESS=1 rewrites them)",
        committed.display()
    );
    for (name, content) in &fresh {
        assert!(
            &old[name] == content,
            "{} is not what the compiler writes today (GRPCORE_BLESS=1 rewrites it; review the diff)",
            committed.join(name).display()
        );
    }
}
