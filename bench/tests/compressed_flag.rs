//! bench_server answers a request whose compressed flag its headers do not explain (no
//! `grpc-encoding`, or an unknown one) as a server on the library's defaults does (issue
//! #12, defect 11, which names every server binary).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use grpcore::{Environment, ServerBuilder};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// gzip of an empty message (mtime 0): what a client compressing with gzip sends for it.
const GZIP_OF_EMPTY: &str = "1f8b080000000000020303000000000000000000";

/// The grpc-status of one unary call made of a hand-made frame (`None`: no status came);
/// see tests/peers/python/h2_unary_frame.py.
fn status(port: u16, path: &str, flag: u8, encoding: &str, body_hex: &str) -> Option<i64> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/peers/python/h2_unary_frame.py"
    );
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args([
            script,
            &port.to_string(),
            path,
            &flag.to_string(),
            encoding,
            body_hex,
            "10",
        ])
        .output()
        .expect("run h2_unary_frame.py (scripts/setup.sh installs h2)");
    let line = String::from_utf8_lossy(&out.stdout);
    let rest = line
        .split("\"grpc_status\": ")
        .nth(1)
        .unwrap_or_else(|| panic!("no grpc_status in {line:?}"));
    let field: String = rest
        .chars()
        .take_while(|c| *c != ',' && *c != '}')
        .collect();
    field.trim().parse().ok()
}

/// The binary at `port` answers the unexplained compressed flags (no `grpc-encoding`, an
/// unknown one) and two controls as the reference server on the library's defaults does.
fn same_statuses(what: &str, port: u16, reference: u16, path: &str) {
    let cases = [
        ("compressed flag, no grpc-encoding", 1, "-", GZIP_OF_EMPTY),
        (
            "compressed flag, unknown grpc-encoding",
            1,
            "snappy",
            GZIP_OF_EMPTY,
        ),
        ("gzip, declared", 1, "gzip", GZIP_OF_EMPTY),
        ("plain", 0, "-", ""),
    ];
    for (case, flag, encoding, body) in cases {
        let expected = status(reference, path, flag, encoding, body);
        let got = status(port, path, flag, encoding, body);
        assert_eq!(got, expected, "{what}, {case}");
        assert!(
            expected.is_some(),
            "{what}, {case}: no status from the reference"
        );
    }
}

#[test]
fn unexplained_compressed_flags_get_the_library_defaults_statuses() {
    let env = Environment::new(1);
    let reference = ServerBuilder::new(&env)
        .register_service(grpcore_bench::benchmark_service())
        .bind("127.0.0.1:0")
        .build()
        .unwrap();
    for lean in ["false", "true"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bench_server"))
            .args(["--port", "0", "--lean", lean])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn bench_server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let server = Server(child);
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .expect("port line");
        same_statuses(
            &format!("bench_server --lean {lean}"),
            port,
            reference.port(),
            "/grpc.testing.BenchmarkService/UnaryCall",
        );
        drop(server);
    }
}
