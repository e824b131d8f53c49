//! A request whose compressed flag its headers do not explain — the flag with no
//! `grpc-encoding`, or with an encoding nobody supports — gets the same status from
//! interop_server as from a server on the library's defaults (issue #12, defect 11). The
//! interop server used to guess from the bytes whether a message was compressed, and so
//! answered such requests OK.
//!
//! The frames are made by hand with the Python `h2` package
//! (tests/peers/python/h2_unary_frame.py).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use grpcore::{
    Environment, Method, ProstCodec, ServerBuilder, ServerContext, ServiceBuilder, Status,
};
use grpcore_interop::paths;
use grpcore_interop::proto::{SimpleRequest, SimpleResponse};

const UNARY_CALL: Method<SimpleRequest, SimpleResponse, ProstCodec> =
    Method::unary(paths::UNARY_CALL);

struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn interop_server() -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_interop_server"))
        .arg("--port=0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn interop_server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .expect("PORT line");
    Server(child, port)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(bytes).unwrap();
    z.finish().unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The grpc-status of one unary call made of a hand-made frame (`None`: no status came).
fn status(port: u16, flag: u8, encoding: &str, body: &[u8]) -> Option<i64> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/peers/python/h2_unary_frame.py"
    );
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args([
            script,
            &port.to_string(),
            paths::UNARY_CALL,
            &flag.to_string(),
            encoding,
            &hex(body),
            "10",
        ])
        .output()
        .expect("run h2_unary_frame.py (scripts/setup.sh installs h2)");
    grpc_status(&String::from_utf8_lossy(&out.stdout))
}

/// The `grpc_status` field of the script's JSON line (null: `None`).
fn grpc_status(line: &str) -> Option<i64> {
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

#[test]
fn unexplained_compressed_flags_get_the_library_defaults_statuses() {
    let env = Environment::new(1);
    // The reference: a server on the library's defaults serving the same path.
    let service = ServiceBuilder::new("grpc.testing.TestService")
        .add_unary(
            &UNARY_CALL,
            |_req: SimpleRequest, _ctx: ServerContext| async {
                Ok::<_, Status>(SimpleResponse::default())
            },
        )
        .build();
    let reference = ServerBuilder::new(&env)
        .register_service(service)
        .bind("127.0.0.1:0")
        .build()
        .unwrap();
    let server = interop_server();

    let plain = prost::Message::encode_to_vec(&SimpleRequest {
        response_size: 1,
        ..Default::default()
    });
    let zipped = gzip(&plain);
    let cases: [(&str, u8, &str, &[u8]); 5] = [
        ("compressed flag, no grpc-encoding", 1, "-", &zipped),
        (
            "compressed flag, unknown grpc-encoding",
            1,
            "snappy",
            &zipped,
        ),
        (
            "compressed flag, no grpc-encoding, plain bytes",
            1,
            "-",
            &plain,
        ),
        ("gzip, declared", 1, "gzip", &zipped),
        ("plain", 0, "-", &plain),
    ];
    let mut seen = Vec::new();
    for (what, flag, encoding, body) in cases {
        let expected = status(reference.port(), flag, encoding, body);
        let got = status(server.1, flag, encoding, body);
        seen.push(format!(
            "{what}: reference {expected:?}, interop_server {got:?}"
        ));
        assert_eq!(got, expected, "{what}: {seen:?}");
    }
    // What the library's defaults answer on this core (1.51): the core hands an unexplained
    // compressed message to the codec as it is, and gzip bytes are no protobuf message.
    assert_eq!(status(server.1, 1, "-", &zipped), Some(13), "{seen:?}");
    assert_eq!(status(server.1, 1, "snappy", &zipped), Some(13), "{seen:?}");
    assert_eq!(status(server.1, 1, "gzip", &zipped), Some(0), "{seen:?}");
}
