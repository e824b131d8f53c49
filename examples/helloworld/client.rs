//! Hello-world client: calls `helloworld.Greeter/SayHello` once and prints the greeting.
//!
//! ```text
//! cargo run --example helloworld_client -- [--target HOST:PORT] [--name NAME]
//! ```
//!
//! Defaults: `--target 127.0.0.1:50051` (where `helloworld_server` listens by default) and
//! `--name world`. The call has a 5-second deadline; if it fails, the client prints the
//! error and exits with status 1.

mod helloworld;

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use grpcore::{CallOptions, ChannelBuilder, Environment};
use helloworld::{HelloRequest, SAY_HELLO};

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
    let (target, name) = parse_args()?;
    let env = Environment::new(1);
    let channel = ChannelBuilder::new(&env).connect(&target)?;
    let request = HelloRequest { name };
    let options = CallOptions::new().timeout(Duration::from_secs(5));
    // `unary` returns a future: in async code, `.await` it instead of blocking with `wait`.
    let reply = channel.unary(&SAY_HELLO, &request, options).wait()?;
    println!("{}", reply.message().message);
    Ok(())
}

/// `--target HOST:PORT` and `--name NAME`, or their defaults.
fn parse_args() -> Result<(String, String), String> {
    let mut target = "127.0.0.1:50051".to_string();
    let mut name = "world".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let slot = match arg.as_str() {
            "--target" => &mut target,
            "--name" => &mut name,
            _ => {
                return Err(format!(
                    "unexpected argument {arg:?}; usage: helloworld_client [--target HOST:PORT] [--name NAME]"
                ))
            }
        };
        *slot = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
    }
    Ok((target, name))
}
