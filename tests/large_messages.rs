//! Large messages with `bytes::Bytes` fields (prost-build's `.bytes(["."])`), end to end:
//! received fields share the core's slices or are gathered once, sent ones are handed to
//! the core as slices of their own; both must arrive intact, outlive their call, and the
//! size limits must still refuse what is over them. Against grpcore itself, Python grpcio
//! and grpc-js, both directions.

mod common;

use std::time::Duration;

use common::{node_client_with, node_server, python_client, python_server, SERVICE};
use futures::StreamExt;
use grpcore::{
    CallOptions, ChannelBuilder, Code, Environment, Method, ProstCodec, RequestStream, Server, ServerBuilder,
    ServerContext, ServerSink, ServiceBuilder, Status,
};
use prost::bytes::Bytes;

const MIB: usize = 1 << 20;

/// `grpcore.test.EchoRequest` (tests/proto/echo.proto) with its `bytes` fields as `Bytes`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BigRequest {
    #[prost(string, tag = "1")]
    pub message: String,
    #[prost(int64, tag = "2")]
    pub seq: i64,
    #[prost(bytes = "bytes", tag = "3")]
    pub payload: Bytes,
    #[prost(int32, tag = "4")]
    pub sleep_ms: i32,
    #[prost(int32, tag = "5")]
    pub fail_code: i32,
    #[prost(string, tag = "6")]
    pub fail_message: String,
    #[prost(bytes = "bytes", tag = "7")]
    pub fail_details: Bytes,
    #[prost(int32, tag = "8")]
    pub response_size: i32,
}

/// `grpcore.test.EchoResponse` with its payload as `Bytes`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BigResponse {
    #[prost(string, tag = "1")]
    pub message: String,
    #[prost(int64, tag = "2")]
    pub seq: i64,
    #[prost(bytes = "bytes", tag = "3")]
    pub payload: Bytes,
}

const UNARY: Method<BigRequest, BigResponse, ProstCodec> = Method::unary("/grpcore.test.Echo/Unary");
const BIDI: Method<BigRequest, BigResponse, ProstCodec> = Method::duplex("/grpcore.test.Echo/Bidi");

/// The echo semantics of the other peers: the request's payload back (the received `Bytes`
/// itself, so a shared or gathered receive buffer is what gets sent), or `response_size`
/// bytes of b'x'.
fn answer(req: BigRequest) -> BigResponse {
    let payload = if req.response_size > 0 { Bytes::from(vec![b'x'; req.response_size as usize]) } else { req.payload };
    BigResponse { message: req.message, seq: req.seq, payload }
}

async fn unary(req: BigRequest, _ctx: ServerContext) -> Result<BigResponse, Status> {
    Ok(answer(req))
}

async fn bidi(mut requests: RequestStream<BigRequest>, mut sink: ServerSink<BigResponse>, _ctx: ServerContext) -> Result<(), Status> {
    while let Some(req) = requests.next().await {
        sink.send(answer(req?)).await?;
    }
    Ok(())
}

fn start_server(env: &Environment) -> Server {
    ServerBuilder::new(env)
        .register_service(ServiceBuilder::new(SERVICE).add_unary(&UNARY, unary).add_duplex(&BIDI, bidi).build())
        .bind("127.0.0.1:0")
        .build()
        .unwrap()
}

fn opts() -> CallOptions {
    CallOptions::new().timeout(Duration::from_secs(30)).wait_for_ready(true)
}

/// `len` bytes that differ from slice to slice (a misplaced piece shows).
fn pattern(len: usize, salt: u8) -> Bytes {
    (0..len).map(|i| (i % 251) as u8 ^ salt).collect::<Vec<u8>>().into()
}

fn big(message: &str, seq: i64, payload: Bytes) -> BigRequest {
    BigRequest { message: message.into(), seq, payload, ..BigRequest::default() }
}

/// Unary and bidi calls of sizes around every threshold (the writer's 32 KiB, the reader's
/// 4 KiB sharing, HTTP/2's 16 KiB frames, the core's 8 and 64 KiB read buffers) up to
/// 3 MiB, against the server at `port`; every received payload is kept until the end.
fn exchange_sizes(env: &Environment, port: u16) -> Vec<(Bytes, Bytes)> {
    let channel = ChannelBuilder::new(env).connect(&format!("127.0.0.1:{port}")).unwrap();
    let mut kept = Vec::new();
    for (i, len) in [0, 100, 4095, 4096, 9_000, 16_384, 32_767, 32_768, 70_000, MIB, 3 * MIB].into_iter().enumerate() {
        let sent = pattern(len, i as u8);
        let reply = channel.unary(&UNARY, &big("u", i as i64, sent.clone()), opts()).wait().unwrap();
        let reply = reply.into_message();
        assert_eq!((reply.message.as_str(), reply.seq), ("u", i as i64));
        assert!(reply.payload == sent, "unary {len}: payload differs ({} bytes back)", reply.payload.len());
        kept.push((sent, reply.payload));
        // A large response the peer makes itself.
        let mut req = big("r", 0, Bytes::new());
        req.response_size = len as i32;
        let reply = channel.unary(&UNARY, &req, opts()).wait().unwrap().into_message();
        assert!(reply.payload.len() == len && reply.payload.iter().all(|&b| b == b'x'), "response_size {len}");
    }
    futures::executor::block_on(async {
        let (mut sink, mut responses) = channel.duplex(&BIDI, opts());
        for (i, len) in [40_000, 2 * MIB, 10, MIB + 7].into_iter().enumerate() {
            let sent = pattern(len, 0x80 | i as u8);
            sink.send(big("b", i as i64, sent.clone())).await.unwrap();
            let reply = responses.next().await.unwrap().unwrap();
            assert_eq!(reply.seq, i as i64);
            assert!(reply.payload == sent, "bidi {len}: payload differs");
            kept.push((sent, reply.payload));
        }
        sink.close().await.unwrap();
        assert!(responses.next().await.is_none());
    });
    kept
}

#[test]
fn bytes_fields_round_trip_and_outlive_their_calls() {
    let env = Environment::new(2);
    let server = start_server(&env);
    let kept = exchange_sizes(&env, server.port());
    // Every received `Bytes` outlives its call, the channel, the server and the
    // environment: what they reference (shared core slices or gathered copies) stays alive
    // and intact, and is freed once when the last of them goes (checked under valgrind by
    // scripts/leak-check.sh large_messages).
    drop(server);
    drop(env);
    let dropper = std::thread::spawn(move || {
        for (sent, got) in &kept {
            assert!(got == sent, "a kept payload of {} bytes changed", sent.len());
        }
        drop(kept); // the last references, on a thread the core never saw
    });
    dropper.join().unwrap();
}

#[test]
fn oversized_bytes_messages_are_still_refused() {
    let env = Environment::new(1);
    let server = ServerBuilder::new(&env)
        .register_service(ServiceBuilder::new(SERVICE).add_unary(&UNARY, unary).build())
        .max_receive_message_len(MIB)
        .bind("127.0.0.1:0")
        .build()
        .unwrap();
    let channel = ChannelBuilder::new(&env)
        .max_receive_message_len(2 * MIB)
        .connect(&format!("127.0.0.1:{}", server.port()))
        .unwrap();
    // Over the server's receive limit.
    let err = channel.unary(&UNARY, &big("huge", 1, pattern(MIB + 1, 1)), opts()).wait().unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    // A response over the client's receive limit (the server's send is unlimited).
    let mut req = big("big reply", 2, Bytes::new());
    req.response_size = (2 * MIB + 1) as i32;
    let err = channel.unary(&UNARY, &req, opts()).wait().unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    // Just under both limits: fine.
    let reply = channel.unary(&UNARY, &big("fits", 3, pattern(MIB - 64, 3)), opts()).wait().unwrap();
    assert_eq!(reply.message().payload.len(), MIB - 64);
}

#[test]
fn grpcore_bytes_client_against_grpcio_and_grpc_js_servers() {
    let env = Environment::new(1);
    for peer in [python_server(&[]), node_server(&[])] {
        let kept = exchange_sizes_unary_only(&env, peer.port);
        drop(peer);
        for (sent, got) in &kept {
            assert!(got == sent, "a kept payload of {} bytes changed", sent.len());
        }
    }
}

/// The unary half of [`exchange_sizes`] (the peers' Bidi echoes with their own semantics).
fn exchange_sizes_unary_only(env: &Environment, port: u16) -> Vec<(Bytes, Bytes)> {
    let channel = ChannelBuilder::new(env).connect(&format!("127.0.0.1:{port}")).unwrap();
    let mut kept = Vec::new();
    for (i, len) in [100, 4096, 16_384, 32_768, 70_000, MIB, 3 * MIB].into_iter().enumerate() {
        let sent = pattern(len, i as u8);
        let reply = channel.unary(&UNARY, &big("p", i as i64, sent.clone()), opts()).wait().unwrap().into_message();
        assert_eq!((reply.message.as_str(), reply.seq), ("p", i as i64));
        assert!(reply.payload == sent, "unary {len}: payload differs ({} bytes back)", reply.payload.len());
        kept.push((sent, reply.payload));
        let mut req = big("r", 0, Bytes::new());
        req.response_size = len as i32;
        let reply = channel.unary(&UNARY, &req, opts()).wait().unwrap().into_message();
        assert!(reply.payload.len() == len && reply.payload.iter().all(|&b| b == b'x'), "response_size {len}");
    }
    kept
}

#[test]
fn grpcio_and_grpc_js_clients_against_a_grpcore_bytes_server() {
    let env = Environment::new(2);
    let server = start_server(&env);
    let target = format!("127.0.0.1:{}", server.port());
    // Their `unary` case echoes up to 1 MiB; `oversized` sends 4 MiB + 1 (over the
    // default receive limit): RESOURCE_EXHAUSTED.
    let (ok, output) = python_client(&target, &["unary", "oversized"]);
    assert!(ok && output.contains("2 passed, 0 failed"), "grpcio:\n{output}");
    let (ok, output) = node_client_with(&[], &target, &["unary", "oversized"]);
    assert!(ok && output.contains("\n2 passed, 0 failed"), "grpc-js:\n{output}");
}
