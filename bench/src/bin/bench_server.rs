//! grpcore's `BenchmarkService` server.
//!
//! ```text
//! bench_server [--port N] [--cq-threads K] [--slots S] [--host 127.0.0.1] [--lean true]
//! ```
//!
//! `--port 0` (the default) picks a free port. Prints `listening on PORT` once it serves,
//! then runs until killed. `--slots` sets `request_slots_per_method` (grpcore's default
//! when absent); `--lean true` serves in lean mode (`ServerBuilder::lean`).

use grpcore::{Environment, ServerBuilder};
use grpcore_bench::common::{announce_port, Flags};

fn main() {
    let mut flags = Flags::from_env();
    let port: u16 = flags.get("port", 0);
    let cq_threads: usize = flags.get("cq-threads", 1);
    let slots: Option<usize> = flags.opt("slots");
    let host: String = flags.get("host", "127.0.0.1".to_string());
    let lean: bool = flags.get("lean", false);
    flags.finish();

    let env = Environment::new(cq_threads.max(1));
    let mut builder = ServerBuilder::new(&env)
        .register_service(grpcore_bench::benchmark_service())
        .bind(format!("{host}:{port}"))
        .lean(lean);
    if let Some(slots) = slots {
        builder = builder.request_slots_per_method(slots);
    }
    let server = match builder.build() {
        Ok(server) => server,
        Err(e) => {
            eprintln!("bench_server: cannot start on {host}:{port}: {e}");
            std::process::exit(1);
        }
    };
    announce_port(server.port());
    loop {
        std::thread::park();
    }
}
