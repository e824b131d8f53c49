//! grpc-rs (crates.io grpcio) `BenchmarkService` server, on the system gRPC core.
//!
//! `grpcio_server [--port N] [--cq-threads K] [--slots S]`: `--slots` sets
//! `requests_slot_per_cq` (grpcio's default, 1024, when absent). Prints
//! `listening on PORT`, then serves until killed.

use std::sync::Arc;

use futures::{SinkExt, TryFutureExt, TryStreamExt};
use grpcio::{EnvBuilder, ServerBuilder, ServerCredentials, ServiceBuilder, WriteFlags};
use grpcore_bench_peers::common::{announce_port, Flags};
use grpcore_bench_peers::grpcio_methods::{STREAMING_CALL, STREAMING_FROM_SERVER, UNARY_CALL};
use grpcore_bench_peers::pb::SimpleRequest;
use grpcore_bench_peers::response_for;

fn main() {
    // Before any thread starts, so that every thread inherits the blocked signals.
    let signals = grpcore_bench_peers::signals::StopSignals::block().expect("block SIGTERM/SIGINT");
    let mut flags = Flags::from_env();
    let port: u16 = flags.get("port", 0);
    let cq_threads: usize = flags.get("cq-threads", 1);
    let slots: Option<usize> = flags.opt("slots");
    flags.finish();

    let env = Arc::new(EnvBuilder::new().cq_count(cq_threads.max(1)).build());
    let service = ServiceBuilder::new()
        .add_unary_handler(&UNARY_CALL, |ctx, req: SimpleRequest, sink| {
            let resp = response_for(&req);
            ctx.spawn(
                sink.success(resp)
                    .unwrap_or_else(|e| eprintln!("grpcio_server: reply failed: {e}")),
            );
        })
        .add_duplex_streaming_handler(&STREAMING_CALL, |ctx, mut requests, mut sink| {
            ctx.spawn(async move {
                let result: grpcio::Result<()> = async {
                    while let Some(req) = requests.try_next().await? {
                        sink.send((response_for(&req), WriteFlags::default()))
                            .await?;
                    }
                    sink.close().await
                }
                .await;
                let _ = result;
            });
        })
        .add_server_streaming_handler(
            &STREAMING_FROM_SERVER,
            |ctx, req: SimpleRequest, mut sink| {
                let resp = response_for(&req);
                ctx.spawn(async move {
                    // Until the client cancels, which fails the send.
                    while sink
                        .send((resp.clone(), WriteFlags::default()))
                        .await
                        .is_ok()
                    {}
                });
            },
        )
        .build();
    let mut builder = ServerBuilder::new(env).register_service(service);
    if let Some(slots) = slots {
        builder = builder.requests_slot_per_cq(slots);
    }
    let mut server = builder.build().expect("grpcio server");
    let port = server
        .add_listening_port(format!("127.0.0.1:{port}"), ServerCredentials::insecure())
        .expect("bind");
    server.start();
    announce_port(port);
    let why = signals.wait().expect("wait for a signal");
    eprintln!("grpcio_server: {why}: shutting down");
    futures::executor::block_on(server.shutdown()).expect("shut down");
}
