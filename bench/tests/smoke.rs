//! Smoke run of the benchmark binaries (what CI runs): `bench_server` and `bench_client`
//! as separate processes, each scenario of `benches/compare` once at a tiny size. No
//! timing is asserted; every call must succeed and the report must be complete.
//! Also checks that the hand-written messages encode exactly as protoc encodes them.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;

#[path = "../../tests/support/server_process.rs"]
mod server_process;
use server_process::ServerProcess;

/// bench_server on a free port, one completion-queue thread, 16 slots, and `extra` flags.
fn start_server(extra: &[&str]) -> ServerProcess {
    let mut args = vec!["--port", "0", "--cq-threads", "1", "--slots", "16"];
    args.extend_from_slice(extra);
    ServerProcess::start(env!("CARGO_BIN_EXE_bench_server"), &args, "listening on ")
}

/// Runs bench_client with `args` against `server`; returns its JSON report line.
fn client(server: &ServerProcess, args: &[&str]) -> String {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_bench_client"))
        .args([
            "--target",
            &server.target(),
            "--warmup-secs",
            "0",
        ])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("spawn bench_client");
    assert!(
        out.status.success(),
        "bench_client {args:?} failed: {}",
        out.status
    );
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "bench_client {args:?} took {:?}",
        start.elapsed()
    );
    let json = String::from_utf8(out.stdout).unwrap();
    for key in [
        "\"qps\":",
        "\"p50\":",
        "\"p90\":",
        "\"p99\":",
        "\"p999\":",
        "\"cpu_secs_per_1k\":",
        "\"errors\":0,",
    ] {
        assert!(json.contains(key), "report lacks {key}: {json}");
    }
    json
}

fn calls(json: &str) -> u64 {
    let rest = &json[json.find("\"calls\":").expect("calls in report") + 8..];
    rest[..rest.find(',').unwrap()].parse().unwrap()
}

#[test]
fn every_scenario_once_at_tiny_size() {
    let server = start_server(&[]);
    // unary 100 B, many streams in flight on several channels (1,000 in the full run)
    let json = client(
        &server,
        &[
            "--rpc",
            "unary",
            "--channels",
            "2",
            "--outstanding",
            "8",
            "--count",
            "200",
        ],
    );
    assert!(calls(&json) >= 200, "{json}");
    // unary 100 B, one at a time (latency)
    let json = client(&server, &["--rpc", "unary", "--count", "20"]);
    assert_eq!(calls(&json), 20, "{json}");
    // streaming ping-pong, one stream
    let json = client(&server, &["--rpc", "streaming", "--count", "20"]);
    assert_eq!(calls(&json), 20, "{json}");
    // unary 1 MiB each way
    let mib = (1 << 20).to_string();
    let json = client(
        &server,
        &[
            "--rpc",
            "unary",
            "--req-size",
            &mib,
            "--resp-size",
            &mib,
            "--count",
            "3",
        ],
    );
    assert_eq!(calls(&json), 3, "{json}");
    // server streaming, and a timed run rather than a counted one: 0.2 s of two streams
    // must have carried at least one message (a run that made no call is a failure)
    let json = client(
        &server,
        &[
            "--rpc",
            "server-streaming",
            "--outstanding",
            "2",
            "--secs",
            "0.2",
        ],
    );
    assert!(calls(&json) > 0, "a timed run made no call: {json}");
}

#[test]
fn lean_server_once_at_tiny_size() {
    let server = start_server(&["--lean", "true"]);
    let json = client(&server, &["--rpc", "unary", "--channels", "2", "--outstanding", "8", "--count", "200"]);
    assert!(calls(&json) >= 200, "{json}");
    let json = client(&server, &["--rpc", "streaming", "--count", "20"]);
    assert_eq!(calls(&json), 20, "{json}");
    let mib = (1 << 20).to_string();
    let json = client(&server, &["--rpc", "unary", "--req-size", &mib, "--resp-size", &mib, "--count", "3"]);
    assert_eq!(calls(&json), 3, "{json}");
}

#[test]
fn messages_encode_exactly_as_protoc_does() {
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
    let text = "response_size: 5 payload { body: \"abc\" } fill_server_id: true \
                response_status { code: 3 message: \"x\" } expect_compressed { value: true }";
    let mut protoc = match Command::new("protoc")
        .args([
            "--proto_path",
            proto_dir,
            "--encode=grpc.testing.SimpleRequest",
            "benchmark_service.proto",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        // Not a skip: a missing protoc would let this check pass without comparing anything.
        Err(e) => panic!("protoc not runnable ({e}); scripts/setup.sh installs it"),
    };
    protoc
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = protoc.wait_with_output().unwrap();
    assert!(out.status.success(), "protoc --encode failed");
    let ours = grpcore_bench::proto::SimpleRequest {
        response_size: 5,
        payload: Some(grpcore_bench::proto::Payload {
            r#type: 0,
            body: b"abc".to_vec().into(),
        }),
        fill_server_id: true,
        response_status: Some(grpcore_bench::proto::EchoStatus {
            code: 3,
            message: "x".into(),
        }),
        expect_compressed: Some(grpcore_bench::proto::BoolValue { value: true }),
        ..Default::default()
    };
    assert_eq!(ours.encode_to_vec(), out.stdout);
    let back = grpcore_bench::proto::SimpleRequest::decode(&out.stdout[..]).unwrap();
    assert_eq!(back, ours);
}
