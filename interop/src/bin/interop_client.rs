//! The interop client: runs interop test cases against a `grpc.testing.TestService` server.
//!
//! ```text
//! interop_client --server_port=PORT [--server_host=HOST] [--server_host_override=NAME]
//!                [--use_tls[=true|false]] [--use_test_ca[=true|false]] [--ca_file=PEM]
//!                --test_case=NAME[,NAME...]|all
//! ```
//! Exits 0 when every case passed, 1 when one failed, 2 on a usage error.

use std::time::Instant;

use grpcore::{ChannelBuilder, Environment};
use grpcore_interop::client::{self, Client, CASES};
use grpcore_interop::flags::{Flags, Spec};
use grpcore_interop::wire::RAW_RECEIVE_ARG;

const SPEC: Spec = Spec {
    values: &["server_host", "server_port", "server_host_override", "test_case", "ca_file"],
    bools: &["use_tls", "use_test_ca"],
};

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("interop_client: {e}");
            std::process::exit(2);
        }
    }
}

fn run() -> Result<bool, String> {
    let flags = Flags::parse(&SPEC, std::env::args().skip(1))?;
    let host = flags.get("server_host").unwrap_or("localhost");
    let port = flags.port("server_port")?.ok_or("--server_port is required")?;
    let cases: Vec<&str> = match flags.get("test_case").ok_or("--test_case is required")? {
        "all" => CASES.to_vec(),
        list => list.split(',').collect(),
    };
    if let Some(unknown) = cases.iter().find(|c| !CASES.contains(c)) {
        return Err(format!("unknown test case {unknown:?}; known: {}", CASES.join(", ")));
    }
    let target = format!("{host}:{port}");
    let env = Environment::new(1);
    let credentials = if flags.bool("use_tls") {
        Some(grpcore_interop::tls::channel_credentials(&flags)?)
    } else {
        if flags.bool("use_test_ca") || flags.get("ca_file").is_some() {
            return Err("--use_test_ca and --ca_file need --use_tls".into());
        }
        None
    };
    let connect = |builder: ChannelBuilder| -> Result<grpcore::Channel, String> {
        match &credentials {
            Some(c) => builder.connect_with_credentials(&target, c),
            None => builder.connect(&target),
        }
        .map_err(|e| format!("cannot create a channel to {target}: {e}"))
    };
    let client = Client {
        channel: connect(ChannelBuilder::new(&env))?,
        raw: connect(ChannelBuilder::new(&env).raw_int_arg(RAW_RECEIVE_ARG, 0))?,
    };
    let mut ok = true;
    for case in cases {
        let start = Instant::now();
        let result = futures::executor::block_on(client::run(&client, case));
        let ms = start.elapsed().as_millis();
        match result {
            Ok(()) => eprintln!("interop_client: {case}: passed ({ms} ms)"),
            Err(e) => {
                eprintln!("interop_client: {case}: FAILED ({ms} ms): {e}");
                ok = false;
            }
        }
    }
    Ok(ok)
}
