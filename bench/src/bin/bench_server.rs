//! grpcore's `BenchmarkService` server.
//!
//! ```text
//! bench_server [--port N] [--cq-threads K] [--slots S] [--host 127.0.0.1] [--lean true]
//!              [--interceptors K] [--metrics true] [--metrics-recorder false] [--tracing true]
//!              [--admission N] [--listener core|owned|sniff]
//! ```
//!
//! `--port 0` (the default) picks a free port. Prints `listening on PORT` once it serves,
//! then serves until SIGTERM or SIGINT: it then stops taking calls, lets those in flight
//! finish for up to 5 seconds, and exits 0. `--slots` sets `request_slots_per_method` (grpcore's default
//! when absent); `--lean true` serves in lean mode (`ServerBuilder::lean`); `--interceptors K`
//! installs K server interceptors that do nothing (to price the seam); `--metrics true`
//! installs `grpcore::metrics::ServerMetrics` over `metrics-exporter-prometheus`'s recorder
//! (`--metrics-recorder false`: no recorder, the facade's no-op handles); `--tracing true`
//! installs `grpcore::trace::ServerTracing` with `tracing-subscriber`'s registry as the
//! subscriber (every span is created and kept until it closes; nothing is printed);
//! `--listener owned` accepts on a listener grpcore owns (`grpcore::listener::Listener`)
//! instead of a port the core binds; `--listener sniff` adds an HTTP/1.1 protocol beside
//! gRPC there, so every connection goes through the sniff stage first.
//! `--admission N` installs `grpcore::admission::Admission` with a limit of N handlers at
//! once (far above the benchmark's concurrency, it prices the path of a server that is not
//! overloaded).

use std::time::Duration;

use grpcore::{Environment, ServerBuilder};
use grpcore_bench::common::{announce_port, Flags};
use grpcore_bench::signals::StopSignals;

/// How long calls in flight may run once a stop was asked for.
const GRACE: Duration = Duration::from_secs(5);

fn main() {
    // Before any thread starts, so that every thread inherits the blocked signals.
    let signals = StopSignals::block().unwrap_or_else(|e| {
        eprintln!("bench_server: cannot block SIGTERM/SIGINT: {e}");
        std::process::exit(1);
    });
    let mut flags = Flags::from_env();
    let port: u16 = flags.get("port", 0);
    let cq_threads: usize = flags.get("cq-threads", 1);
    let slots: Option<usize> = flags.opt("slots");
    let host: String = flags.get("host", "127.0.0.1".to_string());
    let lean: bool = flags.get("lean", false);
    let interceptors: usize = flags.get("interceptors", 0);
    let metrics: bool = flags.get("metrics", false);
    let recorder: bool = flags.get("metrics-recorder", true);
    let tracing: bool = flags.get("tracing", false);
    let admission: u32 = flags.get("admission", 0);
    let listener: String = flags.get("listener", "core".to_string());
    flags.finish();

    let env = Environment::new(cq_threads.max(1));
    let mut builder = ServerBuilder::new(&env).register_service(grpcore_bench::benchmark_service()).lean(lean);
    let addr = format!("{host}:{port}");
    builder = match listener.as_str() {
        "core" => builder.bind(addr),
        "owned" | "sniff" => {
            let mut owned = grpcore::listener::Listener::bind(addr.as_str()).unwrap_or_else(|e| {
                eprintln!("bench_server: {e}");
                std::process::exit(1);
            });
            if listener == "sniff" {
                // A second protocol on the port, so every connection goes through the sniff stage.
                owned = owned.serve_other(grpcore::listener::Protocol::http1(), drop);
            }
            builder.listener(owned)
        }
        other => {
            eprintln!("bench_server: --listener {other}: expected core, owned or sniff");
            std::process::exit(2);
        }
    };
    if admission > 0 {
        // Outermost, as the admission docs ask.
        builder = builder.intercept(grpcore::admission::Admission::builder(admission).build());
    }
    if let Some(slots) = slots {
        builder = builder.request_slots_per_method(slots);
    }
    for _ in 0..interceptors {
        builder = builder.intercept(grpcore_bench::NoopInterceptor);
    }
    if metrics {
        // The recorder first: ServerMetrics makes its handles when the server is built.
        grpcore_bench::install_metrics_recorder(recorder);
        builder = builder.intercept(grpcore::metrics::ServerMetrics::new());
    }
    if tracing {
        use tracing_subscriber::layer::SubscriberExt;
        let registry = tracing_subscriber::registry().with(tracing_subscriber::layer::Identity::new());
        if tracing_subscriber::util::SubscriberInitExt::try_init(registry).is_err() {
            eprintln!("bench_server: a tracing subscriber is already installed");
            std::process::exit(1);
        }
        builder = builder.intercept(grpcore::trace::ServerTracing::new());
    }
    let server = match builder.build() {
        Ok(server) => server,
        Err(e) => {
            eprintln!("bench_server: cannot start on {host}:{port}: {e}");
            std::process::exit(1);
        }
    };
    announce_port(server.port());
    let why = signals.wait().unwrap_or_else(|e| {
        eprintln!("bench_server: waiting for a signal: {e}");
        std::process::exit(1);
    });
    eprintln!("bench_server: {why}: shutting down, calls in flight get {GRACE:?}");
    if let Err(e) = server.shutdown(GRACE).wait() {
        eprintln!("bench_server: shutting down: {e}");
        std::process::exit(1);
    }
}
