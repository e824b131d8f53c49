//! Golden tests: the service code generated for tests/protos/golden/greeter.proto (one
//! service, one method of each kind) must match the files in tests/golden/ exactly; so must
//! the code for tests/protos/policy (grpcore's proto options: deadline policies on method
//! descriptors, application error enums). After
//! an intended change, regenerate them with `GRPCORE_BLESS=1 cargo test -p
//! grpcore-compiler --features protobuf --test golden` and review the diff.
//!
//! For prost, only our part of the package file is compared (what follows prost's
//! messages); for rust-protobuf, our service file. Both include files are compared whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use grpcore_compiler::Codec;

fn here(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The files the build API writes for greeter.proto with `codec`.
fn generate(codec: Codec) -> BTreeMap<String, String> {
    generate_set(codec, "tests/protos/golden/greeter.proto", "tests/protos/golden")
}

/// The files the build API writes for `proto` (under `include`) with `codec`.
fn generate_set(codec: Codec, proto: &str, include: &str) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    grpcore_compiler::configure()
        .codec(codec)
        .out_dir(dir.path())
        .emit_rerun_if_changed(false)
        .compile(&[here(proto)], &[here(include)])
        .unwrap();
    std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect()
}

fn check(golden: &str, actual: &str) {
    let path = here("tests/golden").join(golden);
    if std::env::var_os("GRPCORE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (GRPCORE_BLESS=1 writes it)", path.display()));
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "the files differ in length".to_string(),
                |i| {
                    format!(
                        "first difference at line {}:\n  golden: {:?}\n  actual: {:?}",
                        i + 1,
                        expected.lines().nth(i).unwrap(),
                        actual.lines().nth(i).unwrap()
                    )
                },
            );
        panic!(
            "{} no longer matches the generated code; {line}\n(GRPCORE_BLESS=1 rewrites it)",
            path.display()
        );
    }
}

#[test]
fn prost_output_matches_golden() {
    let files = generate(Codec::Prost);
    assert_eq!(files.keys().collect::<Vec<_>>(), ["golden.v1.rs", "mod.rs"]);
    check("prost/mod.rs", &files["mod.rs"]);
    let package = &files["golden.v1.rs"];
    let ours = package
        .find("// The gRPC service")
        .expect("the service is appended to the package file");
    assert!(
        package[..ours].contains("pub struct HelloRequest"),
        "prost's messages come first"
    );
    check("prost/golden.v1.services.rs", &package[ours..]);
}

#[cfg(feature = "protobuf")]
#[test]
fn rust_protobuf_output_matches_golden() {
    let files = generate(Codec::Protobuf);
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["greeter.grpcore.rs", "greeter.rs", "mod.rs"]
    );
    check("protobuf/mod.rs", &files["mod.rs"]);
    check("protobuf/greeter.grpcore.rs", &files["greeter.grpcore.rs"]);
    assert!(files["greeter.rs"].contains("pub struct HelloRequest"));
}

const POLICY: (&str, &str) = ("tests/protos/policy/grpcore/policy/library.proto", "tests/protos/policy");

#[test]
fn prost_policy_output_matches_golden() {
    let files = generate_set(Codec::Prost, POLICY.0, POLICY.1);
    // grpcore/options.proto's own messages are not generated (no `grpcore.rs`).
    assert_eq!(files.keys().collect::<Vec<_>>(), ["grpcore.policy.rs", "mod.rs"]);
    let package = &files["grpcore.policy.rs"];
    let ours = package
        .find("// Application errors of")
        .expect("the error enum impls follow prost's messages");
    check("prost/grpcore.policy.ours.rs", &package[ours..]);
}

#[cfg(feature = "protobuf")]
#[test]
fn rust_protobuf_policy_output_matches_golden() {
    let files = generate_set(Codec::Protobuf, POLICY.0, POLICY.1);
    assert_eq!(files.keys().collect::<Vec<_>>(), ["library.grpcore.rs", "library.rs", "mod.rs"]);
    check("protobuf/library.grpcore.rs", &files["library.grpcore.rs"]);
    // The embedded descriptor does not name grpcore/options.proto (not generated).
    assert!(!files["library.rs"].contains("options::file_descriptor"), "{}", files["library.rs"]);
}
