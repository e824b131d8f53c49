//! The protoc plugin writes exactly what the build.rs API writes for the same protos and
//! options: both codecs, the tricky proto set and the golden one, default and non-default
//! options. protoc hands the plugin its descriptors in a CodeGeneratorRequest; the build API
//! asks protoc for a FileDescriptorSet: this also proves the two carry the same information.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use grpcore_compiler::Builder;
#[cfg(feature = "protobuf")]
use grpcore_compiler::Codec;

fn here(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read_dir(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
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

fn protoc() -> PathBuf {
    std::env::var_os("PROTOC").map_or_else(|| PathBuf::from("protoc"), PathBuf::from)
}

/// What `protoc-gen-grpcore --include-dir DIR` prints: DIR, now with grpcore/options.proto.
fn options_include(dir: &Path) -> PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_protoc-gen-grpcore"))
        .arg("--include-dir")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert_eq!(
        std::fs::read_to_string(printed.join("grpcore/options.proto")).unwrap(),
        grpcore_compiler::OPTIONS_PROTO
    );
    printed
}

fn via_plugin(option: &str, protos: &[&str], include: &Path) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let shipped = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(protoc());
    cmd.arg(format!(
        "--plugin=protoc-gen-grpcore={}",
        env!("CARGO_BIN_EXE_protoc-gen-grpcore")
    ))
    .arg(format!("--grpcore_out={}", dir.path().display()))
    .arg("-I")
    .arg(include)
    .arg("-I")
    .arg(options_include(shipped.path()));
    if !option.is_empty() {
        cmd.arg(format!("--grpcore_opt={option}"));
    }
    let out = cmd
        .args(protos.iter().map(|p| include.join(p)))
        .output()
        .expect("run protoc");
    assert!(
        out.status.success(),
        "protoc with the plugin failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    read_dir(dir.path())
}

fn via_build(builder: Builder, protos: &[&str], include: &Path) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let protos: Vec<PathBuf> = protos.iter().map(|p| include.join(p)).collect();
    builder
        .out_dir(dir.path())
        .emit_rerun_if_changed(false)
        .compile(&protos, &[include])
        .unwrap();
    read_dir(dir.path())
}

/// Checks that the plugin (with `option`) and the build API (`builder`) write the same files,
/// and returns them.
fn same(option: &str, builder: Builder, protos: &[&str], include: &str) -> BTreeMap<String, String> {
    let include = here(include);
    let plugin = via_plugin(option, protos, &include);
    let build = via_build(builder, protos, &include);
    assert_eq!(
        plugin.keys().collect::<Vec<_>>(),
        build.keys().collect::<Vec<_>>(),
        "not the same files"
    );
    for (name, content) in &plugin {
        assert!(
            content == &build[name],
            "{name} differs between the plugin and the build API (option {option:?})"
        );
    }
    assert!(
        plugin.values().any(|c| c.contains("_grpc {")),
        "a service module was generated"
    );
    plugin
}

/// All the generated code of `files`, for checking what an option did.
fn all_code(files: &BTreeMap<String, String>) -> String {
    files.values().cloned().collect::<Vec<_>>().join("\n")
}

const TRICKY: &[&str] = &[
    "grpcore/tricky/services.proto",
    "grpcore/tricky/common.proto",
];

#[test]
fn prost_tricky_set() {
    let _ = same(
        "",
        grpcore_compiler::configure(),
        TRICKY,
        "tests/protos/tricky",
    );
}

#[test]
fn prost_golden_with_options() {
    let files = same(
        "server=false,server:golden.v1.Greeter=true,client:golden=false,include_file=protos.rs",
        grpcore_compiler::configure()
            .build_server(false)
            .service_server("golden.v1.Greeter", true)
            .service_client("golden", false)
            .include_file("protos.rs"),
        &["greeter.proto"],
        "tests/protos/golden",
    );
    // Each option had its effect (not merely the same one on both paths): the per-service
    // server switch beats server=false, the package-wide client switch removes the client,
    // and the include file is written.
    let code = all_code(&files);
    assert!(code.contains("pub trait Greeter:"), "server:golden.v1.Greeter=true: no server trait");
    assert!(code.contains("pub fn service<I: Greeter>"), "server:golden.v1.Greeter=true: no service()");
    assert!(!code.contains("GreeterClient"), "client:golden=false: a client was generated");
    assert!(files.contains_key("protos.rs"), "include_file=protos.rs: files {:?}", files.keys());
}

#[cfg(feature = "protobuf")]
#[test]
fn rust_protobuf_tricky_set() {
    let _ = same(
        "codec=protobuf",
        grpcore_compiler::configure().codec(Codec::Protobuf),
        TRICKY,
        "tests/protos/tricky",
    );
}

#[cfg(feature = "protobuf")]
#[test]
fn rust_protobuf_golden_with_options() {
    let files = same(
        "codec=protobuf,client=false,grpcore_path=::grpcore",
        grpcore_compiler::configure()
            .codec(Codec::Protobuf)
            .build_client(false),
        &["greeter.proto"],
        "tests/protos/golden",
    );
    let code = all_code(&files);
    assert!(!code.contains("GreeterClient"), "client=false: a client was generated");
    assert!(code.contains("pub trait Greeter:"), "the server is still generated");
    assert!(code.contains("::protobuf::"), "codec=protobuf: no rust-protobuf code");
}

/// The plugin reads grpcore's proto options from protoc's request (prost's descriptor types
/// would drop them) and writes what the build API writes.
fn check_policy(files: &BTreeMap<String, String>) {
    let code = all_code(files);
    assert!(code.contains(".with_max_timeout(::core::time::Duration::from_millis(2000))"), "no deadline policy:\n{code}");
    assert!(code.contains(".with_deadline_required(false)"), "the method's own option was lost");
    assert!(code.contains("::grpcore::ApplicationError for"), "no error enum impl");
    assert!(code.contains("::grpcore::Code::FailedPrecondition"), "the nested enum's code is missing");
    assert!(!code.contains("struct DeadlineOptions"), "grpcore/options.proto's own types were generated");
}

#[test]
fn prost_policy_set() {
    let files = same("", grpcore_compiler::configure(), &["grpcore/policy/library.proto"], "tests/protos/policy");
    check_policy(&files);
}

#[cfg(feature = "protobuf")]
#[test]
fn rust_protobuf_policy_set() {
    let files = same(
        "codec=protobuf",
        grpcore_compiler::configure().codec(Codec::Protobuf),
        &["grpcore/policy/library.proto"],
        "tests/protos/policy",
    );
    check_policy(&files);
    assert!(!files.contains_key("options.rs"), "rust-protobuf generated grpcore/options.proto: {:?}", files.keys());
}

#[test]
fn bad_plugin_options_are_reported_by_protoc() {
    let include = here("tests/protos/golden");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(protoc())
        .arg(format!(
            "--plugin=protoc-gen-grpcore={}",
            env!("CARGO_BIN_EXE_protoc-gen-grpcore")
        ))
        .arg(format!("--grpcore_out={}", dir.path().display()))
        .arg("--grpcore_opt=codec=json")
        .arg("-I")
        .arg(&include)
        .arg(include.join("greeter.proto"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("codec=json: expected prost or protobuf"),
        "{stderr}"
    );
}
