//! grpcore's side of the benchmark: `grpc.testing.BenchmarkService` (proto/benchmark_service.proto)
//! served and called through grpcore, as used by the `bench_server` and `bench_client`
//! binaries, the smoke test and the criterion benches.
//!
//! The messages are written by hand with prost's derive (no build script, no protoc at
//! build time); `tests/smoke.rs` checks that they encode exactly as protoc does.
#![deny(missing_docs)]

pub mod common;
pub mod proto;
pub mod signals;

use futures::StreamExt;
use grpcore::{Method, ProstCodec, Service, ServiceBuilder, Status};

use proto::{Payload, SimpleRequest, SimpleResponse};

/// The service's full name.
pub const SERVICE: &str = "grpc.testing.BenchmarkService";

/// `UnaryCall`.
pub const UNARY_CALL: Method<SimpleRequest, SimpleResponse, ProstCodec> =
    Method::unary("/grpc.testing.BenchmarkService/UnaryCall");
/// `StreamingCall` (ping-pong).
pub const STREAMING_CALL: Method<SimpleRequest, SimpleResponse, ProstCodec> =
    Method::duplex("/grpc.testing.BenchmarkService/StreamingCall");
/// `StreamingFromClient`.
pub const STREAMING_FROM_CLIENT: Method<SimpleRequest, SimpleResponse, ProstCodec> =
    Method::client_streaming("/grpc.testing.BenchmarkService/StreamingFromClient");
/// `StreamingFromServer`.
pub const STREAMING_FROM_SERVER: Method<SimpleRequest, SimpleResponse, ProstCodec> =
    Method::server_streaming("/grpc.testing.BenchmarkService/StreamingFromServer");
/// `StreamingBothWays`.
pub const STREAMING_BOTH_WAYS: Method<SimpleRequest, SimpleResponse, ProstCodec> =
    Method::duplex("/grpc.testing.BenchmarkService/StreamingBothWays");

/// A request with `req_size` payload bytes asking for `resp_size` bytes back.
pub fn request(req_size: usize, resp_size: usize) -> SimpleRequest {
    SimpleRequest {
        response_size: resp_size.min(i32::MAX as usize) as i32,
        payload: Some(Payload {
            r#type: 0,
            body: vec![0; req_size].into(),
        }),
        ..Default::default()
    }
}

/// The response the upstream benchmark servers send: `response_size` zero bytes.
pub fn response_for(req: &SimpleRequest) -> SimpleResponse {
    SimpleResponse {
        payload: Some(Payload {
            r#type: req.response_type,
            body: common::zeroed_body(req.response_size.max(0) as usize).into(),
        }),
        ..Default::default()
    }
}

/// Payload bytes of a response (0 when it has no payload).
pub fn payload_len(resp: &SimpleResponse) -> usize {
    resp.payload.as_ref().map_or(0, |p| p.body.len())
}

/// The whole `BenchmarkService`, implemented the way the upstream benchmark servers do.
pub fn benchmark_service() -> Service {
    ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY_CALL, |req: SimpleRequest, _ctx| async move {
            Ok::<_, Status>(response_for(&req))
        })
        .add_duplex(&STREAMING_CALL, |mut requests, mut sink, _ctx| async move {
            // Each response goes out with the receive of the next request, in one batch (as
            // the C core server does).
            let mut next: Option<SimpleRequest> = requests.message().await?;
            while let Some(req) = next {
                next = sink.send_and_receive(response_for(&req), &mut requests).await?;
            }
            Ok(())
        })
        .add_client_streaming(&STREAMING_FROM_CLIENT, |mut requests, _ctx| async move {
            let mut last = SimpleRequest::default();
            while let Some(req) = requests.next().await {
                last = req?;
            }
            Ok(response_for(&last))
        })
        .add_server_streaming(
            &STREAMING_FROM_SERVER,
            |req: SimpleRequest, mut sink, _ctx| async move {
                let resp = response_for(&req);
                // Until the client cancels, which fails the send.
                while sink.send(resp.clone()).await.is_ok() {}
                Ok(())
            },
        )
        .add_duplex(&STREAMING_BOTH_WAYS, |requests, mut sink, ctx| async move {
            // Drain requests in the background of the sends; stop when either side ends.
            let template = SimpleResponse {
                payload: Some(Payload::default()),
                ..Default::default()
            };
            let drain = requests.for_each(|_| async {});
            let send = async move {
                while !ctx.is_cancelled() && sink.send(template.clone()).await.is_ok() {}
            };
            futures::pin_mut!(drain, send);
            futures::future::select(drain, send).await;
            Ok(())
        })
        .build()
}

/// An interceptor that does nothing, on both sides: installed by `--interceptors K` to price
/// the interceptor seam itself (an observer per call, the start hooks, the end report).
pub struct NoopInterceptor;

impl grpcore::ServerInterceptor for NoopInterceptor {}

impl grpcore::ClientInterceptor for NoopInterceptor {}

/// Installs `metrics-exporter-prometheus`'s recorder (no HTTP listener) for `--metrics true`,
/// with an upkeep thread folding histogram samples in every 5 seconds as a scraped server's
/// would, so the price measured is that of a real recorder. With `recorder == false` none
/// is installed: the `metrics` facade's no-op handles, to price the interceptor alone.
pub fn install_metrics_recorder(recorder: bool) {
    if !recorder {
        return;
    }
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            grpcore::metrics::HANDLING_SECONDS_BUCKETS,
        )
        .and_then(|b| b.install_recorder())
        .unwrap_or_else(|e| {
            eprintln!("cannot install the Prometheus recorder: {e}");
            std::process::exit(1)
        });
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_secs(5));
        handle.run_upkeep();
    });
}
