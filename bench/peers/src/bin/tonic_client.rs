//! tonic's closed-loop load generator: the same flags, phases and JSON as grpcore's
//! `bench_client` (see grpcore-bench's common.rs). `--threads T`: tokio worker threads
//! (default 1). Each channel is its own connection; M tasks per channel.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use grpcore_bench_peers::common::{finish, run_phases, ClientConfig, Control, Flags, Rpc, Samples};
use grpcore_bench_peers::pb::benchmark_service_client::BenchmarkServiceClient;
use grpcore_bench_peers::{payload_len, request};
use tonic::transport::{Channel, Endpoint};

fn main() {
    let mut flags = Flags::from_env();
    let cfg = ClientConfig::from_flags(&mut flags);
    flags.finish();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let channels: Vec<Channel> = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..cfg.channels {
            let endpoint = Endpoint::from_shared(format!("http://{}", cfg.target))
                .expect("target")
                .tcp_nodelay(true);
            let channel = loop {
                match endpoint.connect().await {
                    Ok(c) => break c,
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                }
            };
            v.push(channel);
        }
        v
    });
    let control = Arc::new(Control::new(cfg.count));
    let mut workers = Vec::new();
    for channel in &channels {
        for _ in 0..cfg.outstanding {
            workers.push(rt.spawn(worker(
                cfg.clone(),
                BenchmarkServiceClient::new(channel.clone()),
                control.clone(),
            )));
        }
    }
    let mut samples = Vec::new();
    let measured = run_phases(&cfg, &control, || {
        rt.block_on(async {
            for w in workers.drain(..) {
                samples.push(w.await.expect("worker task"));
            }
        })
    });
    finish("tonic", &cfg, samples, &measured)
}

async fn worker(
    cfg: ClientConfig,
    mut client: BenchmarkServiceClient<Channel>,
    control: Arc<Control>,
) -> Samples {
    let mut s = Samples::default();
    let req = request(cfg.req_size, cfg.resp_size);
    match cfg.rpc {
        Rpc::Unary => {
            while let Some(measured) = control.next() {
                let t0 = Instant::now();
                let ok = match client.unary_call(req.clone()).await {
                    Ok(resp) => payload_len(resp.get_ref()) == cfg.resp_size,
                    Err(e) => {
                        eprintln!("tonic_client: unary call failed: {e}");
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
            // The first request goes out with the call: servers on the C core send their
            // headers with the first response, and tonic's call waits for the headers.
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let _ = tx.send(req.clone()).await;
            let started = client
                .streaming_call(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await;
            let mut responses = match started {
                Ok(r) => r.into_inner(),
                Err(e) => {
                    eprintln!("tonic_client: cannot start the stream: {e}");
                    s.errors += 1;
                    return s;
                }
            };
            if !matches!(responses.next().await, Some(Ok(_))) {
                eprintln!("tonic_client: the first ping-pong failed");
                s.errors += 1;
                return s;
            }
            while let Some(measured) = control.next() {
                let t0 = Instant::now();
                let ok = tx.send(req.clone()).await.is_ok()
                    && matches!(responses.next().await, Some(Ok(r)) if payload_len(&r) == cfg.resp_size);
                if measured {
                    if ok {
                        s.record(t0.elapsed());
                    } else {
                        s.errors += 1;
                    }
                }
                if !ok {
                    eprintln!("tonic_client: ping-pong stream failed");
                    break;
                }
            }
            drop(tx);
            while let Some(Ok(_)) = responses.next().await {}
        }
        Rpc::ServerStreaming => {
            let mut responses = match client.streaming_from_server(req.clone()).await {
                Ok(r) => r.into_inner(),
                Err(e) => {
                    eprintln!("tonic_client: cannot start the stream: {e}");
                    s.errors += 1;
                    return s;
                }
            };
            let mut t0 = Instant::now();
            while let Some(measured) = control.next() {
                let ok = matches!(responses.next().await, Some(Ok(r)) if payload_len(&r) == cfg.resp_size);
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
