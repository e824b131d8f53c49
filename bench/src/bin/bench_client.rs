//! grpcore's closed-loop load generator for `BenchmarkService`.
//!
//! ```text
//! bench_client --target 127.0.0.1:PORT [--rpc unary|streaming|server-streaming]
//!              [--channels C] [--outstanding M] [--req-size B] [--resp-size B]
//!              [--warmup-secs S] [--secs S | --count N] [--threads T] [--interceptors K]
//!              [--metrics true] [--metrics-recorder false]
//! ```
//!
//! `--interceptors K` installs K client interceptors that do nothing (to price the seam);
//! `--metrics true` installs `grpcore::metrics::ClientMetrics` (one, shared by the channels)
//! over `metrics-exporter-prometheus`'s recorder (`--metrics-recorder false`: no recorder).
//!
//! C channels (each its own connection) with M calls or streams in flight on each; every
//! call is a task on grpcore's completion-queue executor (T threads). Prints one JSON line
//! (QPS, latency percentiles, CPU seconds per 1k calls, peak RSS) on stdout and a summary
//! on stderr; exits 1 if any measured call failed.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use grpcore::{CallOptions, Channel, ChannelBuilder, Environment};
use grpcore_bench::common::{finish, run_phases, ClientConfig, Control, Flags, Rpc, Samples};
use grpcore_bench::{payload_len, request, STREAMING_CALL, STREAMING_FROM_SERVER, UNARY_CALL};

fn main() {
    let mut flags = Flags::from_env();
    let cfg = ClientConfig::from_flags(&mut flags);
    let interceptors: usize = flags.get("interceptors", 0);
    let metrics: bool = flags.get("metrics", false);
    let recorder: bool = flags.get("metrics-recorder", true);
    flags.finish();
    if metrics {
        grpcore_bench::install_metrics_recorder(recorder);
    }
    let client_metrics = metrics.then(grpcore::metrics::ClientMetrics::new);

    let env = Environment::new(cfg.threads);
    let channels: Vec<Channel> = (0..cfg.channels)
        .map(|_| {
            // A local subchannel pool gives every channel its own connection (channels
            // with equal arguments would share one otherwise).
            let mut builder = ChannelBuilder::new(&env).raw_int_arg("grpc.use_local_subchannel_pool", 1);
            for _ in 0..interceptors {
                builder = builder.intercept(grpcore_bench::NoopInterceptor);
            }
            if let Some(m) = &client_metrics {
                builder = builder.intercept(m.clone());
            }
            builder
                .connect(&cfg.target)
                .unwrap_or_else(|e| {
                    eprintln!(
                        "bench_client: cannot create a channel to {}: {e}",
                        cfg.target
                    );
                    std::process::exit(2)
                })
        })
        .collect();

    let control = Arc::new(Control::new(cfg.count));
    let mut workers = Vec::new();
    for channel in &channels {
        for _ in 0..cfg.outstanding {
            let worker = worker(cfg.clone(), channel.clone(), control.clone());
            workers.push(env.spawn(worker));
        }
    }
    let mut samples = Vec::new();
    let measured = run_phases(&cfg, &control, || {
        for w in workers.drain(..) {
            samples.push(futures::executor::block_on(w).expect("a worker task panicked"));
        }
    });
    finish("grpcore", &cfg, samples, &measured)
}

/// One outstanding call (or stream), repeated until `control` says stop.
async fn worker(cfg: ClientConfig, channel: Channel, control: Arc<Control>) -> Samples {
    let mut s = Samples::default();
    let req = request(cfg.req_size, cfg.resp_size);
    // Wait for the connection on the first call only, so warm-up absorbs the connect.
    let first = CallOptions::new().wait_for_ready(true);
    match cfg.rpc {
        Rpc::Unary => {
            let mut opts = Some(first);
            while let Some(measured) = control.next() {
                let t0 = Instant::now();
                let ok = match channel
                    .unary(&UNARY_CALL, &req, opts.take().unwrap_or_default())
                    .await
                {
                    Ok(resp) => payload_len(resp.message()) == cfg.resp_size,
                    Err(e) => {
                        eprintln!("bench_client: unary call failed: {e}");
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
            let (mut sink, mut stream) = channel.duplex(&STREAMING_CALL, first);
            while let Some(measured) = control.next() {
                let t0 = Instant::now();
                // The request goes out with the receive of its response, in one batch.
                let ok = matches!(sink.send_and_receive(req.clone(), &mut stream).await,
                                  Ok(Some(r)) if payload_len(&r) == cfg.resp_size);
                if measured {
                    if ok {
                        s.record(t0.elapsed());
                    } else {
                        s.errors += 1;
                    }
                }
                if !ok {
                    eprintln!("bench_client: ping-pong stream failed");
                    if !measured {
                        s.errors += 1;
                    }
                    break;
                }
            }
            let _ = sink.close().await;
            while let Some(item) = stream.next().await {
                if item.is_err() {
                    break;
                }
            }
        }
        Rpc::ServerStreaming => {
            let mut stream = channel.server_streaming(&STREAMING_FROM_SERVER, &req, first);
            let mut t0 = Instant::now();
            while let Some(measured) = control.next() {
                let ok =
                    matches!(stream.next().await, Some(Ok(r)) if payload_len(&r) == cfg.resp_size);
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
                    eprintln!("bench_client: server stream failed");
                    break;
                }
            }
            drop(stream); // cancels the call
        }
    }
    s
}
