//! helloworld_server and route_guide_server answer a request whose compressed flag its
//! headers do not explain (no `grpc-encoding`, or an unknown one) as a server on the
//! library's defaults does (issue #12, defect 11, which names every server binary).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use grpcore::{
    Environment, Method, ProstCodec, ServerBuilder, ServerContext, ServiceBuilder, Status,
};
use grpcore_examples::proto::helloworld::{HelloReply, HelloRequest};
use grpcore_examples::proto::routeguide::{Feature, Point};

const SAY_HELLO: Method<HelloRequest, HelloReply, ProstCodec> =
    Method::unary("/helloworld.Greeter/SayHello");
const GET_FEATURE: Method<Point, Feature, ProstCodec> =
    Method::unary("/routeguide.RouteGuide/GetFeature");

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

fn spawn(binary: &str) -> (Server, u16) {
    let mut child = Command::new(binary)
        .args(["--port", "0"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {binary}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("listening line");
    (Server(child), port)
}

#[test]
fn unexplained_compressed_flags_get_the_library_defaults_statuses() {
    let env = Environment::new(1);
    // References on the library's defaults, serving the same paths with the same messages.
    let reference = ServerBuilder::new(&env)
        .register_service(
            ServiceBuilder::new("helloworld.Greeter")
                .add_unary(&SAY_HELLO, |_r: HelloRequest, _c: ServerContext| async {
                    Ok::<_, Status>(HelloReply::default())
                })
                .build(),
        )
        .register_service(
            ServiceBuilder::new("routeguide.RouteGuide")
                .add_unary(&GET_FEATURE, |_r: Point, _c: ServerContext| async {
                    Ok::<_, Status>(Feature::default())
                })
                .build(),
        )
        .bind("127.0.0.1:0")
        .build()
        .unwrap();
    let (_hello, port) = spawn(env!("CARGO_BIN_EXE_helloworld_server"));
    same_statuses(
        "helloworld_server",
        port,
        reference.port(),
        "/helloworld.Greeter/SayHello",
    );
    let (_guide, port) = spawn(env!("CARGO_BIN_EXE_route_guide_server"));
    same_statuses(
        "route_guide_server",
        port,
        reference.port(),
        "/routeguide.RouteGuide/GetFeature",
    );
}
