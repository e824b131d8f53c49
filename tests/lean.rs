//! Lean mode (`ServerBuilder::lean`): the core's minimal filter stack, with message-size
//! limits checked by grpcore and deadlines still enforced by the server itself.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use grpcore::{CallOptions, Channel, ChannelBuilder, Code, Compression, Environment, Server, ServerBuilder};

fn lean_server(env: &Environment, configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> Server {
    configure(ServerBuilder::new(env).register_service(echo_service()).bind("127.0.0.1:0").lean(true))
        .build()
        .expect("start lean echo server")
}

/// A channel with no receive limit of its own, so only the server's limits are in play.
fn channel_to(env: &Environment, server: &Server) -> Channel {
    ChannelBuilder::new(env)
        .max_receive_message_len(None)
        .connect(&format!("127.0.0.1:{}", server.port()))
        .unwrap()
}

fn sized(n: usize) -> EchoRequest {
    EchoRequest {
        message: "big".into(),
        payload: vec![7; n],
        ..Default::default()
    }
}

fn opts() -> CallOptions {
    CallOptions::new().timeout(Duration::from_secs(30))
}

#[test]
fn grpcio_client_passes_every_echo_case_against_a_lean_server() {
    let env = Environment::new(1);
    let server = lean_server(&env, |b| b);
    let target = format!("127.0.0.1:{}", server.port());
    let (ok, out) = python_client(&target, &[]);
    assert!(ok, "{out}");
    // Compressed requests (the minimal stack has no decompression filter: grpcore inflates).
    let (ok, out) = python_client_with(&["--compression", "gzip"], &target, &["compressed_unary", "compressed_stream", "client_stream"]);
    assert!(ok, "{out}");
}

#[test]
fn default_receive_limit_of_4_mib_is_enforced_for_every_call_kind() {
    let env = Environment::new(1);
    let server = lean_server(&env, |b| b);
    let channel = channel_to(&env, &server);
    let ok = channel.unary(&UNARY, &sized(1 << 20), opts()).wait().unwrap();
    assert_eq!(ok.message().payload.len(), 1 << 20);

    let five_mib = sized(5 << 20);
    let err = channel.unary(&UNARY, &five_mib, opts()).wait().unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(err.to_string().contains("Received message larger than max"), "{err}");

    let err = channel
        .server_streaming(&SERVER_STREAM, &five_mib, opts())
        .into_blocking_iter()
        .find_map(Result::err)
        .expect("an oversized server-streaming request fails");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");

    let (mut sink, response) = channel.client_streaming(&CLIENT_STREAM, opts());
    sink.send_blocking(request("small", 1)).unwrap();
    // The server may end the call while this is in flight: only the status matters.
    let _ = sink.send_blocking(five_mib.clone());
    let _ = sink.close_blocking();
    let err = response.wait().unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");

    let (mut sink, stream) = channel.duplex(&BIDI, opts());
    let _ = sink.send_blocking(five_mib);
    let _ = sink.close_blocking();
    let err = stream.into_blocking_iter().find_map(Result::err).expect("an oversized duplex request fails");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");

    // The server keeps serving.
    assert_eq!(channel.unary(&UNARY, &request("after", 2), opts()).wait().unwrap().message().seq, 2);
}

#[test]
fn explicit_limits_apply_to_requests_decompressed_and_to_responses() {
    let env = Environment::new(1);
    let server = lean_server(&env, |b| b.max_receive_message_len(10_000).max_send_message_len(Some(20_000)));
    let channel = channel_to(&env, &server);
    let err = channel.unary(&UNARY, &sized(12_000), opts()).wait().unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(err.to_string().contains("12"), "names the size: {err}");

    // 50 kB of one byte compresses to a few hundred bytes on the wire, but the limit is on
    // the message itself.
    let gz = opts().compression(Compression::Gzip);
    let err = channel.unary(&UNARY, &sized(50_000), gz.clone()).wait().unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    let small = channel.unary(&UNARY, &sized(9_000), gz).wait().unwrap();
    assert_eq!(small.message().payload, vec![7; 9_000], "a compressed request is decompressed");

    let big_reply = EchoRequest {
        response_size: 30_000,
        ..request("r", 1)
    };
    let err = channel.unary(&UNARY, &big_reply, opts()).wait().unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(err.to_string().contains("Sent message larger than max"), "{err}");

    let mut stream = channel.server_streaming(&SERVER_STREAM, &EchoRequest { seq: 3, ..big_reply }, opts()).into_blocking_iter();
    let err = stream.find_map(Result::err).expect("an oversized streamed response fails");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");

    let fits = EchoRequest {
        response_size: 19_000,
        ..request("r", 1)
    };
    assert_eq!(channel.unary(&UNARY, &fits, opts()).wait().unwrap().message().payload.len(), 19_000);
}

/// The send limit holds for responses sent with `ServerSink::send_and_receive` too: the
/// response is encoded when the call is made, and checked (ending the call) when it is polled.
#[test]
fn the_send_limit_applies_to_joint_duplex_responses() {
    let env = Environment::new(1);
    let server = ServerBuilder::new(&env)
        .register_service(joint_echo_service())
        .bind("127.0.0.1:0")
        .lean(true)
        .max_send_message_len(Some(20_000))
        .build()
        .expect("start lean joint echo server");
    let channel = channel_to(&env, &server);
    let duplex = |sizes: &[i32]| {
        let (mut sink, stream) = channel.duplex(&BIDI, opts());
        for (seq, &size) in sizes.iter().enumerate() {
            // The server may end the call while these are in flight: only the responses matter.
            let _ = sink.send_blocking(EchoRequest {
                response_size: size,
                ..request("joint", seq as i64)
            });
        }
        let _ = sink.close_blocking();
        stream.into_blocking_iter().collect::<Vec<_>>()
    };

    let replies = duplex(&[100, 30_000, 100]);
    let summary: Vec<_> = replies.iter().map(|r| r.as_ref().map(|m| m.payload.len()).map_err(|e| e.code())).collect();
    assert_eq!(replies.len(), 2, "one response, then the error: {summary:?}");
    assert_eq!(replies[0].as_ref().unwrap().payload.len(), 100);
    let err = replies[1].as_ref().unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(err.to_string().contains("Sent message larger than max"), "{err}");

    // The server keeps serving, and a response within the limit goes out.
    let replies = duplex(&[19_000, 5]);
    let sizes: Vec<usize> = replies.into_iter().map(|r| r.unwrap().payload.len()).collect();
    assert_eq!(sizes, [19_000, 5]);
}

/// Runs one unary Echo call from a bare HTTP/2 client that sends `grpc-timeout` and never
/// cancels, asking the handler to sleep `sleep_ms`; returns (grpc-status, seconds taken).
fn call_without_client_cancel(server: &Server, timeout: &str, sleep_ms: i32) -> (Option<i64>, f64) {
    let req = EchoRequest {
        sleep_ms,
        ..request("slow", 1)
    };
    let body: String = prost::Message::encode_to_vec(&req).iter().map(|b| format!("{b:02x}")).collect();
    let out = Command::new(python())
        .arg(format!("{}/tests/peers/python/h2_unary_no_cancel.py", env!("CARGO_MANIFEST_DIR")))
        .args([&server.port().to_string(), "/grpcore.test.Echo/Unary", timeout, &body, "10"])
        .output()
        .expect("run h2_unary_no_cancel.py (scripts/setup.sh installs h2)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    (v["grpc_status"].as_i64(), v["elapsed"].as_f64().unwrap())
}

#[test]
fn the_server_ends_a_call_at_its_deadline_even_if_the_client_never_cancels() {
    let env = Environment::new(1);
    let server = lean_server(&env, |b| b);
    let start = Instant::now();
    let (status, secs) = call_without_client_cancel(&server, "300m", 20_000);
    assert_eq!(status, Some(Code::DeadlineExceeded as i64), "after {secs} s");
    assert!(secs < 5.0, "the handler sleeps 20 s; the deadline is 300 ms; took {secs} s");
    assert!(start.elapsed() < Duration::from_secs(8));

    // The control: with deadline checking off the same call runs to the handler's end, so
    // the check above is the server's doing.
    let unchecked = ServerBuilder::new(&env)
        .register_service(echo_service())
        .bind("127.0.0.1:0")
        .raw_int_arg("grpc.enable_deadline_checking", 0)
        .build()
        .unwrap();
    let (status, secs) = call_without_client_cancel(&unchecked, "300m", 1_500);
    assert_eq!(status, Some(0), "no deadline enforcement: the handler's OK after {secs} s");
    assert!(secs >= 1.4, "{secs}");
}

#[test]
fn lean_and_full_servers_answer_alike() {
    let env = Environment::new(1);
    let lean = lean_server(&env, |b| b);
    let full = start_echo_server(&env);
    for server in [&lean, &full] {
        let channel = channel_to(&env, server);
        let reply = channel.unary(&UNARY, &request("same", 5), opts()).wait().unwrap();
        assert_eq!((reply.message().message.as_str(), reply.message().seq), ("same", 5));
        let failing = EchoRequest {
            fail_code: Code::NotFound as i32,
            fail_message: "nope".into(),
            ..request("f", 1)
        };
        let err = channel.unary(&UNARY, &failing, opts()).wait().unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err}");
        let slow = EchoRequest {
            sleep_ms: 5_000,
            ..request("slow", 1)
        };
        let err = channel
            .unary(&UNARY, &slow, CallOptions::new().timeout(Duration::from_millis(200)))
            .wait()
            .unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    }
}

#[test]
fn a_lean_server_sends_responses_uncompressed() {
    // A client that does not inflate sees a compressed response as undecodable bytes.
    let env = Environment::new(1);
    let big = EchoRequest {
        response_size: 4_000,
        ..request("z", 1)
    };
    let lean = lean_server(&env, |b| b.default_compression(Compression::Gzip));
    let full = ServerBuilder::new(&env)
        .register_service(echo_service())
        .bind("127.0.0.1:0")
        .default_compression(Compression::Gzip)
        .build()
        .unwrap();
    let raw_client = |server: &Server| {
        ChannelBuilder::new(&env)
            .raw_int_arg("grpc.per_message_decompression", 0)
            .connect(&format!("127.0.0.1:{}", server.port()))
            .unwrap()
    };
    let reply = raw_client(&lean).unary(&UNARY, &big, opts()).wait().unwrap();
    assert_eq!(reply.message().payload, vec![b'x'; 4_000]);
    // The control: the full stack compresses, so the same client cannot decode the reply.
    let err = raw_client(&full).unary(&UNARY, &big, opts()).wait().unwrap_err();
    assert!(err.to_string().contains("decode"), "{err}");
}
