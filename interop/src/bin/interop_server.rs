//! The interop server: `grpc.testing.TestService` on grpcore.
//!
//! ```text
//! interop_server --port=PORT [--use_tls[=true|false]] [--tls_cert_file=PEM --tls_key_file=PEM]
//! ```
//! Listens on all interfaces (`[::]:PORT`; `--port=0` picks a free port). Once listening it
//! prints `PORT <n>` on stdout, then serves until SIGTERM or SIGINT: it then stops taking
//! calls, lets those in flight finish for up to 5 seconds, and exits 0.

use std::time::Duration;

use grpcore::{Environment, ServerBuilder};
use grpcore_interop::flags::{Flags, Spec};
use grpcore_interop::signals::StopSignals;

/// How long calls in flight may run once a stop was asked for.
const GRACE: Duration = Duration::from_secs(5);

const SPEC: Spec = Spec {
    values: &["port", "tls_cert_file", "tls_key_file"],
    bools: &["use_tls"],
};

fn main() {
    if let Err(e) = run() {
        eprintln!("interop_server: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    // Before any thread starts, so that every thread inherits the blocked signals.
    let signals = StopSignals::block().map_err(|e| format!("cannot block SIGTERM/SIGINT: {e}"))?;
    let flags = Flags::parse(&SPEC, std::env::args().skip(1))?;
    let port = flags.port("port")?.ok_or("--port is required")?;
    let env = Environment::new(2);
    let builder = grpcore_interop::server::configure(ServerBuilder::new(&env));
    let builder = if flags.bool("use_tls") {
        builder.bind_with_credentials(format!("[::]:{port}"), &grpcore_interop::tls::server_credentials(&flags)?)
    } else {
        if flags.get("tls_cert_file").is_some() || flags.get("tls_key_file").is_some() {
            return Err("--tls_cert_file and --tls_key_file need --use_tls".into());
        }
        builder.bind(format!("[::]:{port}"))
    };
    let server = builder.build().map_err(|e| format!("cannot start: {e}"))?;
    println!("PORT {}", server.port());
    eprintln!(
        "interop_server: serving grpc.testing.TestService on port {} ({})",
        server.port(),
        if flags.bool("use_tls") { "TLS" } else { "plaintext" }
    );
    let why = signals.wait().map_err(|e| format!("waiting for a signal: {e}"))?;
    eprintln!("interop_server: {why}: shutting down, calls in flight get {GRACE:?}");
    server.shutdown(GRACE).wait().map(drop).map_err(|e| format!("shutting down: {e}"))
}
