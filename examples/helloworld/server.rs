//! Hello-world server: answers `helloworld.Greeter/SayHello` with `Hello <name>`.
//!
//! ```text
//! cargo run -p grpcore-examples --bin helloworld_server -- [--port N]
//! ```
//!
//! Listens on 127.0.0.1, port 50051 unless `--port` says otherwise (`--port 0` picks a free
//! one), and prints `listening on 127.0.0.1:<port>` once it accepts calls. It serves until
//! SIGTERM or SIGINT (Ctrl-C) arrives or its standard input ends (Ctrl-D in a terminal, or
//! the writer of a pipe closing it), then shuts down gracefully: no new calls, and calls in
//! flight get 5 seconds to finish; it exits 0. A second Ctrl-C stops it at once. Call it with
//! `cargo run -p grpcore-examples --bin helloworld_client`.
//!
//! It also serves the standard health service (`grpc.health.v1.Health`): `""` and
//! `helloworld.Greeter` are `SERVING` while it runs and turn `NOT_SERVING` when it starts
//! shutting down, before it stops accepting calls.
//!
//! The `Greeter` trait and `greeter_grpc::service` are generated from
//! `helloworld/helloworld.proto` by `build.rs`.

use std::error::Error;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use grpcore::health::{HealthReporter, ServingStatus};
use grpcore::{Environment, ServerBuilder, ServerContext, Status};
use grpcore_examples::proto::helloworld::greeter_grpc::{self, Greeter};
use grpcore_examples::proto::helloworld::{HelloReply, HelloRequest};
use grpcore_examples::signals::StopSignals;

/// How long calls in flight may run once a stop was asked for.
const GRACE: Duration = Duration::from_secs(5);

/// The service's implementation: one `async fn` per method of the proto.
struct Greetings;

impl Greeter for Greetings {
    async fn say_hello(
        &self,
        request: HelloRequest,
        _ctx: ServerContext,
    ) -> Result<HelloReply, Status> {
        Ok(HelloReply {
            message: format!("Hello {}", request.name),
        })
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("helloworld_server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    // Before any thread starts, so that every thread inherits the blocked signals.
    let signals = StopSignals::block()?;
    let args = grpcore_examples::parse_args("helloworld_server", &[("port", "50051")])?;
    let port: u16 = args[0]
        .parse()
        .map_err(|_| format!("--port {:?} is not a port number (0 to 65535)", args[0]))?;
    let env = Environment::new(1);
    // Health: the server as a whole ("") starts SERVING; say so for the greeter too.
    let health = HealthReporter::new();
    health.set_status(greeter_grpc::SERVICE_NAME, ServingStatus::Serving);
    let server = ServerBuilder::new(&env)
        .register_service(health.service())
        .register_service(greeter_grpc::service(Greetings))
        // grpcurl and other reflection clients can list and call it without the .proto.
        .add_reflection()
        .bind(format!("127.0.0.1:{port}"))
        .build()?;
    println!("listening on 127.0.0.1:{}", server.port());
    // Whoever started us may be waiting for that line on a pipe.
    io::stdout().flush()?;

    // Calls are served on the environment's threads; this one only waits for a signal, or
    // for stdin to end (which asks for a stop the same way).
    std::thread::spawn(|| {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        StopSignals::request_stop("standard input closed");
    });
    let why = signals.wait()?;
    eprintln!("helloworld_server: {why}: shutting down, calls in flight get {GRACE:?}");
    let report = server.shutdown(GRACE).wait()?;
    if report.grace_expired {
        eprintln!("helloworld_server: {} calls cancelled after the grace", report.cancelled_calls);
    }
    Ok(())
}
