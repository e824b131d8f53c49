//! Metrics server: the `echo.Echo` service (one method of each kind, failures on demand)
//! with [`ServerMetrics`] and [`ServerTracing`] installed, its metrics in the Prometheus text
//! format on a port of its own, and a `tracing` subscriber that prints one line on stderr
//! per finished call (its span: method, trace and span ids, status code, time).
//!
//! ```text
//! cargo run -p grpcore-examples --bin metrics_server -- [--port N] [--metrics-port M]
//! curl http://127.0.0.1:9090/metrics
//! ```
//!
//! Serves gRPC on 127.0.0.1 (port 50051 unless `--port` says otherwise) and `GET /metrics`
//! over plain HTTP on 127.0.0.1 (port 9090 unless `--metrics-port` says otherwise; 0 picks
//! a free port for either). Prints `listening on 127.0.0.1:<port>`, then
//! `metrics on http://127.0.0.1:<port>/metrics`, once it serves both. It stops like the
//! other example servers: on SIGTERM, SIGINT or the end of its standard input, with 5
//! seconds for calls in flight.
//!
//! The recorder is `metrics-exporter-prometheus`'s, installed before the server is built
//! (the server makes its metric handles when it is built). The exporter's own HTTP listener
//! needs tokio and hyper; the few lines of `serve_metrics` do the same with `std::net`.

use std::error::Error;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use grpcore::metrics::{ServerMetrics, HANDLING_SECONDS_BUCKETS};
use grpcore::trace::ServerTracing;
use grpcore::{
    Environment, RequestStream, ServerBuilder, ServerContext, ServerSink, Status,
};
use grpcore_examples::proto::echo::echo_grpc::{self, Echo};
use grpcore_examples::proto::echo::{EchoReply, EchoRequest};
use grpcore_examples::signals::StopSignals;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// How long calls in flight may run once a stop was asked for.
const GRACE: Duration = Duration::from_secs(5);

/// The most replies `Expand` sends.
const MAX_REPEAT: u32 = 100;

/// The service: echoes, and fails on empty messages.
struct Echoes;

fn reply(request: EchoRequest) -> Result<EchoReply, Status> {
    if request.message.is_empty() {
        return Err(Status::invalid_argument("empty message"));
    }
    Ok(EchoReply {
        message: request.message,
    })
}

impl Echo for Echoes {
    async fn say(&self, request: EchoRequest, _ctx: ServerContext) -> Result<EchoReply, Status> {
        reply(request)
    }

    async fn expand(
        &self,
        request: EchoRequest,
        mut sink: ServerSink<EchoReply>,
        _ctx: ServerContext,
    ) -> Result<(), Status> {
        if request.repeat > MAX_REPEAT {
            return Err(Status::new(
                grpcore::Code::OutOfRange,
                format!("repeat is at most {MAX_REPEAT}"),
            ));
        }
        for _ in 0..request.repeat {
            sink.send(EchoReply {
                message: request.message.clone(),
            })
            .await?;
        }
        Ok(())
    }

    async fn collect(
        &self,
        mut requests: RequestStream<EchoRequest>,
        _ctx: ServerContext,
    ) -> Result<EchoReply, Status> {
        let mut words = Vec::new();
        while let Some(request) = requests.message().await? {
            words.push(reply(request)?.message);
        }
        Ok(EchoReply {
            message: words.join(" "),
        })
    }

    async fn chat(
        &self,
        mut requests: RequestStream<EchoRequest>,
        mut sink: ServerSink<EchoReply>,
        _ctx: ServerContext,
    ) -> Result<(), Status> {
        while let Some(request) = requests.next().await {
            sink.send(reply(request?)?).await?;
        }
        Ok(())
    }
}

/// Answers every HTTP request on `listener` with the metrics (`GET /metrics`) or 404.
fn serve_metrics(listener: TcpListener, handle: PrometheusHandle) {
    for stream in listener.incoming().flatten() {
        if let Err(e) = answer(stream, &handle) {
            eprintln!("metrics_server: /metrics: {e}");
        }
    }
}

fn answer(stream: TcpStream, handle: &PrometheusHandle) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the headers: the request has no body that matters.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut stream = reader.into_inner();
    let (status, content_type, body) =
        match request_line.split_whitespace().take(2).collect::<Vec<_>>()[..] {
            ["GET", "/metrics"] => {
                // Histograms keep their samples until an upkeep folds them in; render does one.
                ("200 OK", "text/plain; version=0.0.4", handle.render())
            }
            _ => (
                "404 Not Found",
                "text/plain",
                "try GET /metrics\n".to_string(),
            ),
        };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("metrics_server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    // Before any thread starts, so that every thread inherits the blocked signals.
    let signals = StopSignals::block()?;
    let args = grpcore_examples::parse_args(
        "metrics_server",
        &[("port", "50051"), ("metrics-port", "9090")],
    )?;
    let port = |i: usize| -> Result<u16, String> {
        args[i]
            .parse()
            .map_err(|_| format!("{:?} is not a port number (0 to 65535)", args[i]))
    };
    let (port, metrics_port) = (port(0)?, port(1)?);

    // The recorder first: ServerMetrics makes its handles when the server is built.
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), HANDLING_SECONDS_BUCKETS)?
        .install_recorder()?;
    let listener = TcpListener::bind(("127.0.0.1", metrics_port))?;
    let metrics_port = listener.local_addr()?.port();

    // A call's span is printed when it closes, with its fields and how long it was open.
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .init();

    let env = Environment::new(1);
    let server = ServerBuilder::new(&env)
        .intercept(ServerMetrics::new())
        .intercept(ServerTracing::new())
        .register_service(echo_grpc::service(Echoes))
        .bind(format!("127.0.0.1:{port}"))
        .build()?;
    std::thread::spawn(move || serve_metrics(listener, handle));
    println!("listening on 127.0.0.1:{}", server.port());
    println!("metrics on http://127.0.0.1:{metrics_port}/metrics");
    // Whoever started us may be waiting for those lines on a pipe.
    io::stdout().flush()?;

    std::thread::spawn(|| {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        StopSignals::request_stop("standard input closed");
    });
    let why = signals.wait()?;
    eprintln!("metrics_server: {why}: shutting down, calls in flight get {GRACE:?}");
    server.shutdown(GRACE).wait()?;
    Ok(())
}
