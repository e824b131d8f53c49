//! Interop with @grpc/grpc-js (npm, pure JavaScript), an implementation we did not write:
//! all four call kinds, metadata, statuses and compression, both directions.

mod common;

use std::time::Duration;

use common::*;
use grpcore::{CallOptions, ChannelBuilder, Code, Compression, Environment, ServerBuilder};

fn opts() -> CallOptions {
    CallOptions::new().timeout(Duration::from_secs(20)).wait_for_ready(true)
}

#[test]
fn grpcore_client_against_grpc_js_server() {
    let peer = node_server(&[]);
    let env = Environment::new(1);
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", peer.port)).unwrap();
    futures::executor::block_on(check_all_call_kinds(channel.clone()));
    // Deadline and unimplemented against grpc-js.
    let mut req = request("slow", 1);
    req.sleep_ms = 3_000;
    let err = channel
        .unary(&UNARY, &req, CallOptions::new().timeout(Duration::from_millis(300)))
        .wait()
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    let m: grpcore::Method<Vec<u8>, Vec<u8>, grpcore::BytesCodec> = grpcore::Method::unary("/grpcore.test.Echo/Nope");
    assert_eq!(channel.unary(&m, &vec![], opts()).wait().unwrap_err().code(), Code::Unimplemented);
}

#[test]
fn grpc_js_client_against_grpcore_server() {
    let env = Environment::new(2);
    let server = start_echo_server(&env);
    let (ok, output) = node_client_with(&[], &format!("127.0.0.1:{}", server.port()), &[]);
    println!("{output}");
    assert!(ok, "the grpc-js client reported failures:\n{output}");
    // Every case of the client ran and passed: "0 passed, 0 failed" (no case run) is a failure.
    assert!(output.contains("\n12 passed, 0 failed"), "{output}");
}

#[test]
fn compression_interoperates_with_grpc_js_both_ways() {
    let env = Environment::new(1);
    for (algo, flag) in [(Compression::Gzip, "gzip"), (Compression::Deflate, "deflate")] {
        // grpcore client → grpc-js server (which compresses its responses).
        let peer = node_server(&["--compression", flag]);
        let proxy = ByteProxy::start(peer.port);
        let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", proxy.port)).unwrap();
        channel.unary(&UNARY, &request("warm", 0), opts()).wait().unwrap();
        proxy.new_messages();
        let req = compressible(100 * 1024);
        let (up, down) = proxy.measure(|| {
            let reply = channel.unary(&UNARY, &req, opts().compression(algo)).wait().unwrap();
            assert_eq!(reply.message().payload, req.payload);
        });
        assert!(up < 10 * 1024, "grpcore → grpc-js {flag}: {up} bytes up");
        assert!(down < 10 * 1024, "grpc-js → grpcore {flag}: {down} bytes down");
        let (up, down) = proxy.new_messages();
        assert_wire_format(&up, flag, &format!("grpcore → grpc-js {flag}"));
        assert_wire_format(&down, flag, &format!("grpc-js → grpcore {flag}"));

        // grpc-js client → grpcore server compressing by default.
        let server = ServerBuilder::new(&env)
            .register_service(echo_service())
            .default_compression(algo)
            .bind("127.0.0.1:0")
            .build()
            .unwrap();
        let proxy = ByteProxy::start(server.port());
        let (up, down) = proxy.measure(|| {
            let (ok, output) = node_client_with(
                &["--compression", flag],
                &format!("127.0.0.1:{}", proxy.port),
                &["compressed_unary", "compressed_stream"],
            );
            assert!(ok, "{output}");
            assert!(output.contains("\n2 passed, 0 failed"), "{output}");
        });
        assert!(up < 20 * 1024 && down < 20 * 1024, "grpc-js {flag} with grpcore: up {up} down {down}");
        let (up, down) = proxy.new_messages();
        assert_wire_format(&up, flag, &format!("grpc-js client {flag}"));
        assert_wire_format(&down, flag, &format!("grpcore server {flag}"));
    }
}
