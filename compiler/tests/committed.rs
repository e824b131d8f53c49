//! Code that grpcore commits from this compiler's output stays what the compiler writes
//! today: the reflection protocol's messages and service (src/reflection/generated/, from
//! src/reflection/proto/). After a change to the compiler or to the proto, rewrite them with
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
    let include = repo("src/reflection/proto");
    let committed = repo("src/reflection/generated");
    let dir = tempfile::tempdir().unwrap();
    grpcore_compiler::configure()
        .grpcore_path("crate")
        // The descriptors a server sends are `Bytes` shared with the generated code's statics.
        .configure_prost(|config| {
            config.bytes(["."]);
        })
        .out_dir(dir.path())
        .emit_rerun_if_changed(false)
        .compile(&[include.join("grpc/reflection/v1/reflection.proto")], &[&include])
        .unwrap();
    let fresh = read_dir(dir.path());
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
