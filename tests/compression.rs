//! Compression: gzip and deflate, per call, per channel, per server and per message, with
//! the bytes on the wire counted by a proxy to prove they really shrank.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use grpcore::{CallOptions, ChannelBuilder, Compression, Environment, ServerBuilder, ServerContext, ServiceBuilder, Status, WriteFlags};

const PAYLOAD: usize = 100 * 1024;

fn opts() -> CallOptions {
    CallOptions::new().timeout(Duration::from_secs(20)).wait_for_ready(true)
}

/// Small enough that 100 KiB of 'x' must have been compressed (it shrinks to ~200 bytes).
fn assert_compressed(bytes: u64, what: &str) {
    assert!(bytes < 10 * 1024, "{what}: {bytes} bytes on the wire, expected compression");
}

fn assert_plain(bytes: u64, what: &str) {
    assert!(bytes > PAYLOAD as u64, "{what}: only {bytes} bytes on the wire, expected no compression");
}

#[test]
fn per_call_request_compression_shrinks_the_wire_and_opt_out_does_not() {
    let env = Environment::new(1);
    let server = start_echo_server(&env);
    let proxy = ByteProxy::start(server.port());
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", proxy.port)).unwrap();
    // The response is small (response_size 1) so only the request direction counts.
    let mut req = compressible(PAYLOAD);
    req.response_size = 1;
    channel.unary(&UNARY, &request("warm", 0), opts()).wait().unwrap();
    proxy.new_messages();
    let (plain_up, _) = proxy.measure(|| {
        channel.unary(&UNARY, &req, opts()).wait().unwrap();
    });
    assert_plain(plain_up, "no compression");
    assert_wire_format(&proxy.new_messages().0, "identity", "no compression");
    for algo in [Compression::Gzip, Compression::Deflate] {
        let (up, _) = proxy.measure(|| {
            channel.unary(&UNARY, &req, opts().compression(algo)).wait().unwrap();
        });
        assert_compressed(up, algo.name());
        assert_wire_format(&proxy.new_messages().0, algo.name(), algo.name());
    }
    // Per-message opt-out on a compressed stream: the message goes plain.
    let (up, _) = proxy.measure(|| {
        futures::executor::block_on(async {
            let (mut sink, mut stream) = channel.duplex(&BIDI, opts().compression(Compression::Gzip));
            sink.send_with(req.clone(), WriteFlags::new().no_compress(true)).await.unwrap();
            assert_eq!(stream.next().await.unwrap().unwrap().payload.len(), 1);
            sink.close().await.unwrap();
            assert!(stream.next().await.is_none());
        })
    });
    assert_plain(up, "no_compress write");
    assert_wire_format(&proxy.new_messages().0, "identity", "no_compress write");
}

#[test]
fn channel_default_compression_applies_to_every_call() {
    let env = Environment::new(1);
    let server = start_echo_server(&env);
    let proxy = ByteProxy::start(server.port());
    for algo in [Compression::Gzip, Compression::Deflate] {
        let channel = ChannelBuilder::new(&env)
            .default_compression(algo)
            .connect(&format!("127.0.0.1:{}", proxy.port))
            .unwrap();
        let mut req = compressible(PAYLOAD);
        req.response_size = 1;
        channel.unary(&UNARY, &request("warm", 0), opts()).wait().unwrap();
        proxy.new_messages();
        let (up, _) = proxy.measure(|| {
            channel.unary(&UNARY, &req, opts()).wait().unwrap();
        });
        assert_compressed(up, algo.name());
        assert_wire_format(&proxy.new_messages().0, algo.name(), algo.name());
    }
}

#[test]
fn server_default_and_per_call_response_compression() {
    let env = Environment::new(1);
    // Server default gzip.
    let server = ServerBuilder::new(&env)
        .register_service(echo_service())
        .default_compression(Compression::Gzip)
        .bind("127.0.0.1:0")
        .build()
        .unwrap();
    let proxy = ByteProxy::start(server.port());
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", proxy.port)).unwrap();
    let mut req = request("big reply", 1);
    req.response_size = PAYLOAD as i32;
    channel.unary(&UNARY, &request("warm", 0), opts()).wait().unwrap();
    proxy.new_messages();
    let (_, down) = proxy.measure(|| {
        assert_eq!(channel.unary(&UNARY, &req, opts()).wait().unwrap().message().payload.len(), PAYLOAD);
    });
    assert_compressed(down, "server default gzip");
    assert_wire_format(&proxy.new_messages().1, "gzip", "server default gzip");

    // Per-call choice in the handler, on a server without a default.
    let service = ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, |req: EchoRequest, ctx: ServerContext| async move {
            let algo = if req.message == "deflate" { Compression::Deflate } else { Compression::Gzip };
            if req.message != "plain" {
                ctx.set_compression(algo);
            }
            Ok::<_, Status>(EchoResponse { payload: vec![b'x'; PAYLOAD], ..Default::default() })
        })
        .add_server_streaming(&SERVER_STREAM, |req: EchoRequest, mut sink: grpcore::ServerSink<EchoResponse>, ctx: ServerContext| async move {
            ctx.set_compression(Compression::Gzip);
            for i in 0..req.seq {
                sink.send(EchoResponse { seq: i, payload: vec![b'x'; PAYLOAD], ..Default::default() }).await?;
            }
            Ok(())
        })
        .build();
    let server = ServerBuilder::new(&env).register_service(service).bind("127.0.0.1:0").build().unwrap();
    let proxy = ByteProxy::start(server.port());
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", proxy.port)).unwrap();
    channel.unary(&UNARY, &request("plain", 0), opts()).wait().unwrap();
    proxy.new_messages();
    let (_, down) = proxy.measure(|| {
        channel.unary(&UNARY, &request("plain", 0), opts()).wait().unwrap();
    });
    assert_plain(down, "handler chose nothing");
    assert_wire_format(&proxy.new_messages().1, "identity", "handler chose nothing");
    for name in ["gzip", "deflate"] {
        let (_, down) = proxy.measure(|| {
            channel.unary(&UNARY, &request(name, 0), opts()).wait().unwrap();
        });
        assert_compressed(down, name);
        assert_wire_format(&proxy.new_messages().1, name, name);
    }
    let (_, down) = proxy.measure(|| {
        let n = channel
            .server_streaming(&SERVER_STREAM, &request("s", 5), opts())
            .into_blocking_iter()
            .map(|r| r.unwrap().payload.len())
            .sum::<usize>();
        assert_eq!(n, 5 * PAYLOAD);
    });
    assert_compressed(down, "streamed gzip responses");
    assert_wire_format(&proxy.new_messages().1, "gzip", "streamed gzip responses");
}

#[test]
fn compression_interoperates_with_grpcio_both_ways() {
    let env = Environment::new(1);
    // grpcore client compressing requests to a grpcio server compressing responses.
    for (algo, flag) in [(Compression::Gzip, "gzip"), (Compression::Deflate, "deflate")] {
        let peer = python_server(&["--compression", flag]);
        let proxy = ByteProxy::start(peer.port);
        let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", proxy.port)).unwrap();
        channel.unary(&UNARY, &request("warm", 0), opts()).wait().unwrap();
        proxy.new_messages();
        let req = compressible(PAYLOAD);
        let (up, down) = proxy.measure(|| {
            let reply = channel.unary(&UNARY, &req, opts().compression(algo)).wait().unwrap();
            assert_eq!(reply.message().payload, req.payload);
        });
        assert_compressed(up, &format!("grpcore → grpcio {flag}"));
        assert_compressed(down, &format!("grpcio → grpcore {flag}"));
        let (up, down) = proxy.new_messages();
        assert_wire_format(&up, flag, &format!("grpcore → grpcio {flag}"));
        assert_wire_format(&down, flag, &format!("grpcio → grpcore {flag}"));
    }
    // grpcio client compressing requests to a grpcore server compressing responses.
    for flag in ["gzip", "deflate"] {
        let algo = if flag == "gzip" { Compression::Gzip } else { Compression::Deflate };
        let server = ServerBuilder::new(&env)
            .register_service(echo_service())
            .default_compression(algo)
            .bind("127.0.0.1:0")
            .build()
            .unwrap();
        let proxy = ByteProxy::start(server.port());
        let (up, down) = proxy.measure(|| {
            let (ok, output) = python_client_with(
                &["--compression", flag],
                &format!("127.0.0.1:{}", proxy.port),
                &["compressed_unary", "compressed_stream"],
            );
            assert!(ok, "{output}");
        });
        // Two calls, 100 KiB each way each: far less when both directions compress.
        assert!(up < 20 * 1024 && down < 20 * 1024, "grpcio {flag}: up {up} down {down}");
        let (up, down) = proxy.new_messages();
        assert_wire_format(&up, flag, &format!("grpcio client {flag}"));
        assert_wire_format(&down, flag, &format!("grpcore server {flag}"));
    }
}
