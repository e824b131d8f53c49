//! A request whose compressed flag its headers do not explain — the flag with no
//! `grpc-encoding`, or with an encoding nobody supports — gets the same status from
//! interop_server as from a server on the library's defaults (issue #12, defect 11). The
//! interop server used to guess from the bytes whether a message was compressed, and so
//! answered such requests OK.
//!
//! The frames are made by hand with the Python `h2` package
//! (tests/peers/python/h2_unary_frame.py).

use std::io::Write;

use grpcore::{
    Environment, Method, ProstCodec, ServerBuilder, ServerContext, ServiceBuilder, Status,
};
use grpcore_interop::paths;
use grpcore_interop::proto::{SimpleRequest, SimpleResponse};

#[path = "../../tests/support/server_process.rs"]
mod server_process;
use server_process::{h2_unary_frame_status, ServerProcess};

const UNARY_CALL: Method<SimpleRequest, SimpleResponse, ProstCodec> =
    Method::unary(paths::UNARY_CALL);

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
    h2_unary_frame_status(port, paths::UNARY_CALL, flag, encoding, &hex(body))
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
    let server = ServerProcess::start(env!("CARGO_BIN_EXE_interop_server"), &["--port=0"], "PORT ");

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
        let got = status(server.port(), flag, encoding, body);
        seen.push(format!(
            "{what}: reference {expected:?}, interop_server {got:?}"
        ));
        assert_eq!(got, expected, "{what}: {seen:?}");
    }
    // What the library's defaults answer on this core (1.51): the core hands an unexplained
    // compressed message to the codec as it is, and gzip bytes are no protobuf message.
    assert_eq!(status(server.port(), 1, "-", &zipped), Some(13), "{seen:?}");
    assert_eq!(status(server.port(), 1, "snappy", &zipped), Some(13), "{seen:?}");
    assert_eq!(status(server.port(), 1, "gzip", &zipped), Some(0), "{seen:?}");
}
