//! Interop with Python grpcio (PyPI), an implementation we did not write:
//! our client against its server, its client against our server.

mod common;

use std::time::{Duration, Instant};

use common::*;
use grpcore::{CallOptions, ChannelBuilder, Code, Environment, Error, Metadata, ServerBuilder};

fn channel_to(env: &Environment, port: u16) -> grpcore::Channel {
    ChannelBuilder::new(env).connect(&format!("127.0.0.1:{port}")).unwrap()
}

#[test]
fn grpcore_client_against_grpcio_server() {
    let peer = python_server(&[]);
    let env = Environment::new(1);
    let channel = channel_to(&env, peer.port);
    let opts = || CallOptions::new().timeout(Duration::from_secs(20)).wait_for_ready(true);

    // Unary success, with a payload large enough to span several slices.
    let mut req = request("hello", 42);
    req.payload = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let reply = channel.unary(&UNARY, &req, opts()).wait().unwrap();
    assert_eq!(reply.message().message, "hello");
    assert_eq!(reply.message().seq, 42);
    assert_eq!(reply.message().payload, req.payload);

    // Metadata both ways, ASCII and binary.
    let mut md = Metadata::new();
    md.append("x-echo-ascii", "hello").unwrap();
    md.append_bin("x-echo-data-bin", vec![0u8, 1, 0xfe, 0xff]).unwrap();
    let reply = channel.unary(&UNARY, &request("md", 1), opts().metadata(md)).wait().unwrap();
    assert_eq!(reply.initial_metadata().get("x-echo-ascii"), Some("hello"));
    assert_eq!(reply.initial_metadata().get_bin("x-echo-data-bin"), Some(&[0u8, 1, 0xfe, 0xff][..]));
    assert_eq!(reply.trailing_metadata().get("x-trailer-ascii"), Some("hello"));
    assert_eq!(reply.trailing_metadata().get_bin("x-trailer-data-bin"), Some(&[0u8, 1, 0xfe, 0xff][..]));

    // A status with code, message and binary details.
    let mut req = request("fail", 1);
    req.fail_code = Code::FailedPrecondition.as_i32();
    req.fail_message = "precondition: é ünïcode".into();
    req.fail_details = b"\x08\x09detail\x00\xff".to_vec();
    let err = channel.unary(&UNARY, &req, opts()).wait().unwrap_err();
    let Error::Rpc(status) = err else { panic!("expected a status, got {err}") };
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "precondition: é ünïcode");
    assert_eq!(status.details(), b"\x08\x09detail\x00\xff");

    // DEADLINE_EXCEEDED against a slow handler (10 s), promptly: the bound leaves a loaded
    // machine room and still tells the 300 ms deadline from the answer.
    let mut req = request("slow", 1);
    req.sleep_ms = 10_000;
    let start = Instant::now();
    let err = channel
        .unary(&UNARY, &req, CallOptions::new().timeout(Duration::from_millis(300)))
        .wait()
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert!(start.elapsed() < Duration::from_secs(6), "took {:?}", start.elapsed());

    // UNIMPLEMENTED for an unknown method and an unknown service.
    for path in ["/grpcore.test.Echo/NoSuchMethod", "/grpcore.test.NoSuchService/Unary"] {
        let m: grpcore::Method<Vec<u8>, Vec<u8>, grpcore::BytesCodec> =
            grpcore::Method::with_path(grpcore::MethodKind::Unary, path);
        let err = channel.unary(&m, &vec![], opts()).wait().unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented, "{path}: {err}");
    }

    // Raw bytes through BytesCodec reach the peer's decoder and come back unchanged.
    let raw: grpcore::Method<Vec<u8>, Vec<u8>, grpcore::BytesCodec> = grpcore::Method::unary("/grpcore.test.Echo/Unary");
    let reply = channel.unary(&raw, &vec![0x0a, 0x03, b'a', b'b', b'c'], opts()).wait().unwrap();
    assert_eq!(reply.message(), &vec![0x0a, 0x03, b'a', b'b', b'c']);
}

#[test]
fn grpcore_client_receive_limit_against_grpcio_server() {
    let peer = python_server(&[]);
    let env = Environment::new(1);
    let channel = ChannelBuilder::new(&env)
        .max_receive_message_len(64 * 1024)
        .connect(&format!("127.0.0.1:{}", peer.port))
        .unwrap();
    let mut req = request("big", 1);
    req.response_size = 100 * 1024;
    let err = channel
        .unary(&UNARY, &req, CallOptions::new().timeout(Duration::from_secs(20)).wait_for_ready(true))
        .wait()
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(err.to_string().contains("65536"), "the error names the limit: {err}");
}

#[test]
fn grpcio_client_against_grpcore_server() {
    let env = Environment::new(2);
    let server = start_echo_server(&env);
    let (ok, output) = python_client(
        &format!("127.0.0.1:{}", server.port()),
        &["unary", "metadata", "status", "deadline", "unimplemented", "undecodable", "oversized"],
    );
    println!("{output}");
    assert!(ok, "the Python client reported failures:\n{output}");
    assert!(output.contains("7 passed, 0 failed"), "{output}");
}

#[test]
fn grpcore_server_enforces_its_receive_limit_for_grpcio() {
    let env = Environment::new(1);
    let server = ServerBuilder::new(&env)
        .register_service(echo_service())
        .max_receive_message_len(1024)
        .bind("127.0.0.1:0")
        .build()
        .unwrap();
    // 2 KiB is far under every default limit: only the 1,024-byte limit refuses it
    // (RESOURCE_EXHAUSTED), while 500 bytes still get through.
    let (ok, output) = python_client(&format!("127.0.0.1:{}", server.port()), &["over_1k", "under_1k"]);
    assert!(ok, "{output}");
    assert!(output.contains("2 passed, 0 failed"), "{output}");
}

#[test]
fn grpcore_client_streams_against_grpcio_server() {
    let peer = python_server(&[]);
    let env = Environment::new(1);
    let channel = channel_to(&env, peer.port);
    futures::executor::block_on(check_all_call_kinds(channel));
}

#[test]
fn grpcio_client_streams_against_grpcore_server() {
    let env = Environment::new(2);
    let server = start_echo_server(&env);
    let (ok, output) = python_client(&format!("127.0.0.1:{}", server.port()), &["client_stream", "server_stream", "bidi"]);
    println!("{output}");
    assert!(ok, "the Python client reported failures:\n{output}");
    assert!(output.contains("3 passed, 0 failed"), "{output}");
}
