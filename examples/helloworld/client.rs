//! Hello-world client: calls `helloworld.Greeter/SayHello` once and prints the greeting.
//!
//! ```text
//! cargo run -p grpcore-examples --bin helloworld_client -- [--target HOST:PORT] [--name NAME]
//! ```
//!
//! Defaults: `--target 127.0.0.1:50051` (where `helloworld_server` listens by default) and
//! `--name world`. The call has a 5-second deadline; if it fails, the client prints the
//! error and exits with status 1.
//!
//! `GreeterClient` is generated from `helloworld/helloworld.proto` by `build.rs`.

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use grpcore::{ChannelBuilder, Environment};
use grpcore_examples::proto::helloworld::greeter_grpc::GreeterClient;
use grpcore_examples::proto::helloworld::HelloRequest;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("helloworld_client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let args = grpcore_examples::parse_args(
        "helloworld_client",
        &[("target", "127.0.0.1:50051"), ("name", "world")],
    )?;
    let (target, name) = (&args[0], &args[1]);
    let env = Environment::new(1);
    let client = GreeterClient::new(ChannelBuilder::new(&env).connect(target)?);
    // In async code, `.await` the request instead of blocking with `wait`.
    let reply = client
        .say_hello(HelloRequest { name: name.clone() })
        .timeout(Duration::from_secs(5))
        .wait()?;
    println!("{}", reply.message);
    Ok(())
}
