//! tonic's `BenchmarkService` server: the idiomatic generated-trait implementation.
//!
//! `tonic_server [--port N] [--threads K] [--layer true]`: K tokio worker threads (default
//! 1). Prints `listening on PORT`, then serves until SIGTERM or SIGINT, then stops
//! gracefully and exits 0. `--layer true` wraps every call
//! in a tower layer doing what one grpcore interceptor that does nothing costs: note the
//! start time, the method and a header, and at the end the status and elapsed time.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::{Stream, StreamExt};
use grpcore_bench_peers::common::{announce_port, Flags};
use grpcore_bench_peers::pb::benchmark_service_server::{BenchmarkService, BenchmarkServiceServer};
use grpcore_bench_peers::pb::{SimpleRequest, SimpleResponse};
use grpcore_bench_peers::response_for;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

type ResponseStream = Pin<Box<dyn Stream<Item = Result<SimpleResponse, Status>> + Send + 'static>>;

struct Bench;

#[tonic::async_trait]
impl BenchmarkService for Bench {
    async fn unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        Ok(Response::new(response_for(request.get_ref())))
    }

    type StreamingCallStream = ResponseStream;
    async fn streaming_call(
        &self,
        request: Request<Streaming<SimpleRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let out = request
            .into_inner()
            .map(|r| r.map(|req| response_for(&req)));
        Ok(Response::new(Box::pin(out)))
    }

    async fn streaming_from_client(
        &self,
        request: Request<Streaming<SimpleRequest>>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let mut requests = request.into_inner();
        let mut last = SimpleRequest::default();
        while let Some(req) = requests.next().await {
            last = req?;
        }
        Ok(Response::new(response_for(&last)))
    }

    type StreamingFromServerStream = ResponseStream;
    async fn streaming_from_server(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<ResponseStream>, Status> {
        let resp = response_for(request.get_ref());
        Ok(Response::new(Box::pin(futures::stream::repeat_with(
            move || Ok(resp.clone()),
        ))))
    }

    type StreamingBothWaysStream = ResponseStream;
    async fn streaming_both_ways(
        &self,
        request: Request<Streaming<SimpleRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let out = request
            .into_inner()
            .map(|r| r.map(|req| response_for(&req)));
        Ok(Response::new(Box::pin(out)))
    }
}

/// The tower layer of `--layer true`: grpcore's no-op interceptor's work, tonic's way.
#[derive(Clone)]
struct ObserveLayer;

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner }
    }
}

#[derive(Clone)]
struct Observe<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for Observe<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let method: std::sync::Arc<str> = request.uri().path().into();
        let has_auth = request.headers().contains_key("authorization");
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            let code = result
                .as_ref()
                .ok()
                .and_then(|r| r.headers().get("grpc-status"))
                .and_then(|v| v.to_str().ok()?.parse::<i32>().ok());
            std::hint::black_box((method, has_auth, code, started.elapsed()));
            result
        })
    }
}

fn main() {
    // Before any thread starts, so that every thread inherits the blocked signals.
    let signals = grpcore_bench_peers::signals::StopSignals::block().expect("block SIGTERM/SIGINT");
    let mut flags = Flags::from_env();
    let port: u16 = flags.get("port", 0);
    let threads: usize = flags.get("threads", 1);
    let layer: bool = flags.get("layer", false);
    flags.finish();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = rt.spawn(async move {
        let incoming = TcpIncoming::bind(([127, 0, 0, 1], port).into())
            .expect("bind")
            .with_nodelay(Some(true));
        announce_port(incoming.local_addr().expect("local addr").port());
        let stopped = async {
            let _ = stopped.await;
        };
        if layer {
            tonic::transport::Server::builder()
                .layer(ObserveLayer)
                .add_service(BenchmarkServiceServer::new(Bench))
                .serve_with_incoming_shutdown(incoming, stopped)
                .await
                .expect("serve");
        } else {
            tonic::transport::Server::builder()
                .add_service(BenchmarkServiceServer::new(Bench))
                .serve_with_incoming_shutdown(incoming, stopped)
                .await
                .expect("serve");
        }
    });
    let why = signals.wait().expect("wait for a signal");
    eprintln!("tonic_server: {why}: shutting down");
    let _ = stop.send(());
    rt.block_on(serving).expect("the server task");
}
