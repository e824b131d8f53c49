//! Hello-world server: answers `helloworld.Greeter/SayHello` with "Hello <name>".
//!
//! ```text
//! cargo run --example helloworld_server -- [--port N]
//! ```
//!
//! Listens on 127.0.0.1, port 50051 unless `--port` says otherwise (`--port 0` picks a free
//! one), and prints `listening on 127.0.0.1:<port>` once it accepts calls. It serves until
//! its standard input ends (Ctrl-D in a terminal, or the writer of a pipe closing it), then
//! shuts down gracefully: no new calls, and calls in flight get 5 seconds to finish. Ctrl-C
//! stops it at once. Call it with `cargo run --example helloworld_client`.

mod helloworld;

use std::error::Error;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use grpcore::{Environment, ServerBuilder, ServerContext, ServiceBuilder, Status};
use helloworld::{HelloReply, HelloRequest, SAY_HELLO};

async fn say_hello(request: HelloRequest, _ctx: ServerContext) -> Result<HelloReply, Status> {
    Ok(HelloReply {
        message: format!("Hello {}", request.name),
    })
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
    let port = parse_args()?;
    let env = Environment::new(1);
    let service = ServiceBuilder::new("helloworld.Greeter")
        .add_unary(&SAY_HELLO, say_hello)
        .build();
    let server = ServerBuilder::new(&env)
        .register_service(service)
        .bind(format!("127.0.0.1:{port}"))
        .build()?;
    println!("listening on 127.0.0.1:{}", server.port());
    // Whoever started us may be waiting for that line on a pipe.
    io::stdout().flush()?;

    // Calls are served on the environment's threads; this one only waits for stdin to end.
    io::copy(&mut io::stdin().lock(), &mut io::sink())?;
    server.shutdown(Duration::from_secs(5)).wait()?;
    Ok(())
}

/// `--port N`, or the default port.
fn parse_args() -> Result<u16, String> {
    let mut port = 50051;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                let value = args.next().ok_or("--port needs a value")?;
                port = value
                    .parse()
                    .map_err(|_| format!("--port {value:?} is not a port number (0 to 65535)"))?;
            }
            _ => {
                return Err(format!(
                    "unexpected argument {arg:?}; usage: helloworld_server [--port N]"
                ))
            }
        }
    }
    Ok(port)
}
