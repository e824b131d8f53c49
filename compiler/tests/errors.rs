//! What a build log says when something is wrong: a missing protoc, a syntax error, an
//! unknown import, a proto outside the include paths. Each message names the file and what
//! to do. The tests change PROTOC and PATH, so they take turns.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use grpcore_compiler::Error;

static ENV: Mutex<()> = Mutex::new(());

/// Writes `files` (name, contents) into a fresh directory and compiles the first one.
fn compile(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<(), Error>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    let out = dir.path().join("out");
    let result = grpcore_compiler::configure()
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .compile(&[dir.path().join(files[0].0)], &[dir.path()]);
    (dir, result)
}

const GOOD: &str =
    "syntax = \"proto3\";\npackage p;\nmessage M {}\nservice S { rpc Call(M) returns (M); }\n";

fn message(result: Result<(), Error>) -> String {
    result.expect_err("the compile must fail").to_string()
}

/// Runs `f` with the variable `key` set to `value` (or removed), then restores it.
fn with_var<T>(key: &str, value: Option<&Path>, f: impl FnOnce() -> T) -> T {
    let saved = std::env::var_os(key);
    match value {
        Some(v) => std::env::set_var(key, v),
        None => std::env::remove_var(key),
    }
    let out = f();
    match saved {
        Some(v) => std::env::set_var(key, v),
        None => std::env::remove_var(key),
    }
    out
}

#[test]
fn protoc_named_by_protoc_but_missing() {
    let _turn = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let missing = PathBuf::from("/nonexistent/bin/protoc");
    let text = with_var("PROTOC", Some(&missing), || {
        message(compile(&[("svc.proto", GOOD)]).1)
    });
    assert!(
        text.contains("PROTOC is set to /nonexistent/bin/protoc"),
        "{text}"
    );
    assert!(text.contains("svc.proto"), "names the proto: {text}");
    assert!(
        text.contains("apt-get install protobuf-compiler"),
        "says how to get protoc: {text}"
    );
}

#[cfg(not(feature = "vendored-protoc"))]
#[test]
fn no_protoc_anywhere() {
    let _turn = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let empty = tempfile::tempdir().unwrap();
    let text = with_var("PROTOC", None, || {
        with_var("PATH", Some(empty.path()), || {
            message(compile(&[("svc.proto", GOOD)]).1)
        })
    });
    assert!(
        text.contains("PROTOC is not set and there is no protoc on PATH"),
        "{text}"
    );
    assert!(text.contains("svc.proto"), "names the proto: {text}");
    for remedy in [
        "apt-get install protobuf-compiler",
        "brew install protobuf",
        "set PROTOC",
        "vendored-protoc",
    ] {
        assert!(text.contains(remedy), "mentions {remedy}: {text}");
    }
}

#[test]
fn syntax_error() {
    let _turn = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let bad = "syntax = \"proto3\";\npackage p;\nmessage M {\n  string name = ;\n}\n";
    let (_dir, result) = compile(&[("broken.proto", bad)]);
    let text = message(result);
    assert!(
        text.contains("broken.proto:4:"),
        "names the file and line: {text}"
    );
    assert!(text.contains("What to do: fix the .proto file"), "{text}");
}

#[test]
fn unknown_import() {
    let _turn = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let importer =
        "syntax = \"proto3\";\npackage p;\nimport \"deps/absent.proto\";\nmessage M {}\n";
    let (_dir, result) = compile(&[("importer.proto", importer)]);
    let text = message(result);
    assert!(
        text.contains("deps/absent.proto"),
        "names the missing import: {text}"
    );
    assert!(
        text.contains("importer.proto"),
        "names the importing file: {text}"
    );
    assert!(
        text.contains("not under any include path"),
        "says what to do: {text}"
    );
}

#[test]
fn proto_outside_the_include_paths() {
    let _turn = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let elsewhere = tempfile::tempdir().unwrap();
    let proto = elsewhere.path().join("lost.proto");
    std::fs::write(&proto, GOOD).unwrap();
    let include = tempfile::tempdir().unwrap();
    let text = message(
        grpcore_compiler::configure()
            .out_dir(include.path().join("out"))
            .emit_rerun_if_changed(false)
            .compile(&[&proto], &[include.path()]),
    );
    assert!(text.contains("lost.proto"), "{text}");
    assert!(
        text.contains("must be inside one of the include paths"),
        "{text}"
    );
}

#[test]
fn proto_that_does_not_exist() {
    let _turn = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let text = message(
        grpcore_compiler::configure()
            .out_dir(std::env::temp_dir())
            .emit_rerun_if_changed(false)
            .compile(&["no/such/file.proto"], &["no"]),
    );
    assert!(text.contains("no/such/file.proto: no such file"), "{text}");
}
