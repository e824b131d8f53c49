//! Criterion micro-benchmarks of grpcore's hot paths, through the public API only:
//!
//! - `codec/encode`: what grpcore's send path runs before the core sees a message
//!   (`ProstCodec::encode` into the buffer that grpcore hands to the core);
//! - `unary_loopback`: one in-process unary call (grpcore client and server on one
//!   environment) per iteration, at several sizes; the difference between sizes is the
//!   per-byte cost of encode, byte-buffer adoption, transport and decode from the core's
//!   slices;
//! - `metadata`: building a [`grpcore::Metadata`], and a loopback call carrying 8 custom
//!   entries each way against one carrying none (the difference is the conversion to and
//!   from the core's metadata arrays, both sides);
//! - `dispatch`: a task spawned onto a completion-queue thread and joined (one kick, one
//!   CQ event, one poll) and one ping-pong message on an open stream (two CQ events per
//!   side), the per-event cost of tag dispatch.
//!
//! `cargo bench -p grpcore-bench --bench hot_paths [-- FILTER]`; under `cargo test` each
//! benchmark runs once. Isolating the byte-buffer and metadata conversions from the core
//! needs crate-internal access; see benches/README.md for the hook that would take.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::StreamExt;
use grpcore::{
    CallOptions, Channel, ChannelBuilder, Codec, Environment, Metadata, ProstCodec, Server,
    ServerBuilder, ServiceBuilder, Status,
};
use grpcore_bench::proto::{SimpleRequest, SimpleResponse};
use grpcore_bench::{benchmark_service, request, response_for, UNARY_CALL};

const SIZES: [usize; 4] = [0, 100, 16 << 10, 1 << 20];

/// A grpcore server with the benchmark service plus an echo-metadata variant, and a channel to it.
fn loopback() -> (Environment, Server, Channel) {
    let env = Environment::new(1);
    let server = ServerBuilder::new(&env)
        .register_service(benchmark_service())
        .register_service(
            ServiceBuilder::new("bench.Metadata")
                .add_unary(
                    &METADATA_CALL,
                    |req: SimpleRequest, ctx: grpcore::ServerContext| async move {
                        ctx.set_initial_metadata(ctx.request_metadata().clone());
                        Ok::<_, Status>(response_for(&req))
                    },
                )
                .build(),
        )
        .bind("127.0.0.1:0")
        .build()
        .expect("server");
    let channel = ChannelBuilder::new(&env)
        .connect(&format!("127.0.0.1:{}", server.port()))
        .expect("channel");
    // Connect before measuring.
    channel
        .unary(
            &UNARY_CALL,
            &request(1, 1),
            CallOptions::new().wait_for_ready(true),
        )
        .wait()
        .expect("first call");
    (env, server, channel)
}

const METADATA_CALL: grpcore::Method<SimpleRequest, SimpleResponse, ProstCodec> =
    grpcore::Method::unary("/bench.Metadata/Echo");

fn eight_entries() -> Metadata {
    let mut md = Metadata::new();
    for i in 0..6 {
        md.append(&format!("x-bench-{i}"), "a-typical-header-value-0123456789")
            .unwrap();
    }
    md.append_bin("x-bench-trace-bin", vec![7u8; 16]).unwrap();
    md.append(
        "authorization",
        "Bearer abcdefghijklmnopqrstuvwxyz0123456789",
    )
    .unwrap();
    md
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec/encode");
    for size in SIZES {
        let req = request(size, size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &req, |b, req| {
            b.iter(|| {
                let mut buf = Vec::new();
                <ProstCodec as Codec<SimpleRequest>>::encode(black_box(req), &mut buf).unwrap();
                buf
            })
        });
    }
    g.finish();
}

fn unary(c: &mut Criterion) {
    let (_env, _server, channel) = loopback();
    let mut g = c.benchmark_group("unary_loopback");
    for size in SIZES {
        let req = request(size, size);
        g.throughput(Throughput::Bytes(2 * size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &req, |b, req| {
            b.iter(|| {
                channel
                    .unary(&UNARY_CALL, req, CallOptions::new())
                    .wait()
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn metadata(c: &mut Criterion) {
    let mut g = c.benchmark_group("metadata");
    g.bench_function("build_8_entries", |b| b.iter(eight_entries));
    let (_env, _server, channel) = loopback();
    let req = request(100, 100);
    g.bench_function("unary_loopback_no_metadata", |b| {
        b.iter(|| {
            channel
                .unary(&METADATA_CALL, &req, CallOptions::new())
                .wait()
                .unwrap()
        })
    });
    let md = eight_entries();
    g.bench_function("unary_loopback_8_entries_each_way", |b| {
        b.iter(|| {
            let reply = channel
                .unary(
                    &METADATA_CALL,
                    &req,
                    CallOptions::new().metadata(md.clone()),
                )
                .wait()
                .unwrap();
            assert!(reply.initial_metadata().get("x-bench-0").is_some());
            reply
        })
    });
    g.finish();
}

fn dispatch(c: &mut Criterion) {
    let mut g = c.benchmark_group("dispatch");
    let env = Environment::new(1);
    g.bench_function("spawn_and_join_on_cq_thread", |b| {
        b.iter(|| futures::executor::block_on(env.spawn(async { black_box(1) })).unwrap())
    });
    let (_env, _server, channel) = loopback();
    let (mut sink, mut stream) = channel.duplex(&grpcore_bench::STREAMING_CALL, CallOptions::new());
    let req = request(100, 100);
    g.bench_function("pingpong_message_100B", |b| {
        b.iter(|| {
            futures::executor::block_on(async {
                sink.send(req.clone()).await.unwrap();
                stream.next().await.unwrap().unwrap()
            })
        })
    });
    g.finish();
    drop(sink);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = codec, unary, metadata, dispatch
}
criterion_main!(benches);
