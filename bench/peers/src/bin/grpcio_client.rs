//! grpc-rs (crates.io grpcio) closed-loop load generator on the system gRPC core: the same
//! flags, phases and JSON as grpcore's `bench_client`. `--threads T`: completion queues.
//! Workers run on grpcio's completion-queue threads (`Client::spawn`), its fastest path.

use std::sync::Arc;
use std::time::Instant;

use futures::{SinkExt, StreamExt};
use grpcio::{CallOption, ChannelBuilder, Client, EnvBuilder, WriteFlags};
use grpcore_bench_peers::common::{finish, run_phases, ClientConfig, Control, Flags, Rpc, Samples};
use grpcore_bench_peers::grpcio_methods::{STREAMING_CALL, STREAMING_FROM_SERVER, UNARY_CALL};
use grpcore_bench_peers::{payload_len, request};

fn main() {
    let mut flags = Flags::from_env();
    let cfg = ClientConfig::from_flags(&mut flags);
    flags.finish();
    let env = Arc::new(EnvBuilder::new().cq_count(cfg.threads).build());
    let clients: Vec<Client> = (0..cfg.channels)
        .map(|_| {
            Client::new(
                ChannelBuilder::new(env.clone())
                    .use_local_subchannel_pool(true)
                    .connect(&cfg.target),
            )
        })
        .collect();
    let control = Arc::new(Control::new(cfg.count));
    let mut workers = Vec::new();
    for client in &clients {
        for _ in 0..cfg.outstanding {
            let (tx, rx) = futures::channel::oneshot::channel();
            let fut = worker(cfg.clone(), client.clone(), control.clone());
            client.spawn(async move {
                let _ = tx.send(fut.await);
            });
            workers.push(rx);
        }
    }
    let mut samples = Vec::new();
    let measured = run_phases(&cfg, &control, || {
        for w in workers.drain(..) {
            samples.push(futures::executor::block_on(w).expect("worker"));
        }
    });
    finish("grpcio", &cfg, samples, &measured)
}

async fn worker(cfg: ClientConfig, client: Client, control: Arc<Control>) -> Samples {
    let mut s = Samples::default();
    let req = request(cfg.req_size, cfg.resp_size);
    let first = || CallOption::default().wait_for_ready(true);
    match cfg.rpc {
        Rpc::Unary => {
            let mut opt = Some(first());
            while let Some(measured) = control.next() {
                let t0 = Instant::now();
                let call =
                    client.unary_call_async(&UNARY_CALL, &req, opt.take().unwrap_or_default());
                let ok = match call {
                    Ok(receiver) => match receiver.await {
                        Ok(resp) => payload_len(&resp) == cfg.resp_size,
                        Err(e) => {
                            eprintln!("grpcio_client: unary call failed: {e}");
                            false
                        }
                    },
                    Err(e) => {
                        eprintln!("grpcio_client: cannot start a call: {e}");
                        false
                    }
                };
                if measured {
                    if ok {
                        s.record(t0.elapsed());
                    } else {
                        s.errors += 1;
                    }
                }
            }
        }
        Rpc::Streaming => {
            let (mut sink, mut receiver) = match client.duplex_streaming(&STREAMING_CALL, first()) {
                Ok(pair) => pair,
                Err(e) => {
                    eprintln!("grpcio_client: cannot start the stream: {e}");
                    s.errors += 1;
                    return s;
                }
            };
            while let Some(measured) = control.next() {
                let t0 = Instant::now();
                let ok = sink
                    .send((req.clone(), WriteFlags::default()))
                    .await
                    .is_ok()
                    && matches!(receiver.next().await, Some(Ok(r)) if payload_len(&r) == cfg.resp_size);
                if measured {
                    if ok {
                        s.record(t0.elapsed());
                    } else {
                        s.errors += 1;
                    }
                }
                if !ok {
                    eprintln!("grpcio_client: ping-pong stream failed");
                    break;
                }
            }
            let _ = sink.close().await;
            while let Some(Ok(_)) = receiver.next().await {}
        }
        Rpc::ServerStreaming => {
            let mut receiver = match client.server_streaming(&STREAMING_FROM_SERVER, &req, first())
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("grpcio_client: cannot start the stream: {e}");
                    s.errors += 1;
                    return s;
                }
            };
            let mut t0 = Instant::now();
            while let Some(measured) = control.next() {
                let ok = matches!(receiver.next().await, Some(Ok(r)) if payload_len(&r) == cfg.resp_size);
                let now = Instant::now();
                if measured {
                    if ok {
                        s.record(now - t0);
                    } else {
                        s.errors += 1;
                    }
                }
                t0 = now;
                if !ok {
                    break;
                }
            }
        }
    }
    s
}
