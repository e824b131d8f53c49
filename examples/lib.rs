//! What grpcore's examples share: the code `build.rs` generates from
//! `helloworld/helloworld.proto`, `route_guide/route_guide.proto` and `metrics/echo.proto`
//! (messages by prost, clients and servers by grpcore-compiler), and the route guide's
//! feature database.
//!
//! The programs are the binaries `helloworld_server`, `helloworld_client`,
//! `route_guide_server`, `route_guide_client` and `metrics_server`:
//! `cargo run -p grpcore-examples --bin helloworld_server`.
#![deny(missing_docs)]

/// The generated modules: `proto::helloworld`, `proto::routeguide` and `proto::echo`.
pub mod proto {
    /// The proto package `helloworld`: `HelloRequest`, `HelloReply` and the `Greeter`
    /// service (`greeter_grpc`).
    pub mod helloworld {
        grpcore::include_proto!("helloworld");
    }
    /// The proto package `routeguide`: the `RouteGuide` service (`route_guide_grpc`) and
    /// its messages.
    pub mod routeguide {
        grpcore::include_proto!("routeguide");
    }
    /// The proto package `echo`: the metrics example's `Echo` service (`echo_grpc`).
    pub mod echo {
        grpcore::include_proto!("echo");
    }
}

pub mod route_guide_db;
/// Stopping the server binaries gracefully on SIGTERM/SIGINT: one file, shared with
/// grpcore-bench (and the benchmark peers).
#[path = "../bench/src/signals.rs"]
pub mod signals;

use std::error::Error;

/// Parses `--name value` options: `defaults` gives every accepted name and its default
/// value; the result has one value per name, in the same order.
pub fn parse_args(program: &str, defaults: &[(&str, &str)]) -> Result<Vec<String>, Box<dyn Error>> {
    let mut values: Vec<String> = defaults.iter().map(|(_, v)| v.to_string()).collect();
    let usage = defaults
        .iter()
        .map(|(k, _)| format!("[--{k} VALUE]"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let slot = defaults
            .iter()
            .position(|(k, _)| arg.strip_prefix("--") == Some(k))
            .ok_or_else(|| format!("unexpected argument {arg:?}; usage: {program} {usage}"))?;
        values[slot] = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
    }
    Ok(values)
}
