//! tonic's `BenchmarkService` server: the idiomatic generated-trait implementation.
//!
//! `tonic_server [--port N] [--threads K]`: K tokio worker threads (default 1). Prints
//! `listening on PORT`, then serves until killed.

use std::pin::Pin;

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

fn main() {
    let mut flags = Flags::from_env();
    let port: u16 = flags.get("port", 0);
    let threads: usize = flags.get("threads", 1);
    flags.finish();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let incoming = TcpIncoming::bind(([127, 0, 0, 1], port).into())
            .expect("bind")
            .with_nodelay(Some(true));
        announce_port(incoming.local_addr().expect("local addr").port());
        tonic::transport::Server::builder()
            .add_service(BenchmarkServiceServer::new(Bench))
            .serve_with_incoming(incoming)
            .await
            .expect("serve");
    });
}
