//! bench_server answers a request whose compressed flag its headers do not explain (no
//! `grpc-encoding`, or an unknown one) as a server on the library's defaults does (issue
//! #12, defect 11, which names every server binary).

use grpcore::{Environment, ServerBuilder};

#[path = "../../tests/support/server_process.rs"]
mod server_process;
use server_process::{same_statuses, ServerProcess};

#[test]
fn unexplained_compressed_flags_get_the_library_defaults_statuses() {
    let env = Environment::new(1);
    let reference = ServerBuilder::new(&env)
        .register_service(grpcore_bench::benchmark_service())
        .bind("127.0.0.1:0")
        .build()
        .unwrap();
    for lean in ["false", "true"] {
        let server = ServerProcess::start(
            env!("CARGO_BIN_EXE_bench_server"),
            &["--port", "0", "--lean", lean],
            "listening on ",
        );
        same_statuses(
            &format!("bench_server --lean {lean}"),
            server.port(),
            reference.port(),
            "/grpc.testing.BenchmarkService/UnaryCall",
        );
        drop(server);
    }
}
