//! Shared by the integration tests: the `grpcore.test.Echo` service (tests/proto/echo.proto)
//! as hand-written prost messages, a grpcore implementation of it with the same semantics as
//! the Python peer (tests/peers/python/echo_server.py), and helpers that run the peers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use grpcore::{Code, Environment, Metadata, Method, ProstCodec, Server, ServerBuilder, ServerContext, ServiceBuilder, Status};

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    #[prost(string, tag = "1")]
    pub message: String,
    #[prost(int64, tag = "2")]
    pub seq: i64,
    #[prost(bytes = "vec", tag = "3")]
    pub payload: Vec<u8>,
    #[prost(int32, tag = "4")]
    pub sleep_ms: i32,
    #[prost(int32, tag = "5")]
    pub fail_code: i32,
    #[prost(string, tag = "6")]
    pub fail_message: String,
    #[prost(bytes = "vec", tag = "7")]
    pub fail_details: Vec<u8>,
    #[prost(int32, tag = "8")]
    pub response_size: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoResponse {
    #[prost(string, tag = "1")]
    pub message: String,
    #[prost(int64, tag = "2")]
    pub seq: i64,
    #[prost(bytes = "vec", tag = "3")]
    pub payload: Vec<u8>,
}

pub const SERVICE: &str = "grpcore.test.Echo";
pub const UNARY: Method<EchoRequest, EchoResponse, ProstCodec> = Method::unary("/grpcore.test.Echo/Unary");

pub fn request(message: &str, seq: i64) -> EchoRequest {
    EchoRequest {
        message: message.to_string(),
        seq,
        ..Default::default()
    }
}

/// Echo-metadata semantics shared with the Python peer: `x-echo-*` request entries come back
/// as initial metadata and as `x-trailer-*` trailers.
fn echo_metadata(ctx: &ServerContext) {
    let mut initial = Metadata::new();
    let mut trailers = Metadata::new();
    for (k, v) in ctx.request_metadata().iter() {
        if let Some(rest) = k.strip_prefix("x-echo-") {
            let trailer = format!("x-trailer-{rest}");
            if k.ends_with("-bin") {
                initial.append_bin(k, v.to_vec()).unwrap();
                trailers.append_bin(&trailer, v.to_vec()).unwrap();
            } else {
                let v = std::str::from_utf8(v).unwrap();
                initial.append(k, v).unwrap();
                trailers.append(&trailer, v).unwrap();
            }
        }
    }
    ctx.set_initial_metadata(initial);
    ctx.set_trailing_metadata(trailers);
}

/// The grpcore Echo service: same semantics as the Python peer.
pub async fn unary_echo(req: EchoRequest, ctx: ServerContext) -> Result<EchoResponse, Status> {
    echo_metadata(&ctx);
    if req.message == "panic" {
        panic!("handler asked to panic");
    }
    if req.sleep_ms > 0 {
        let until = Instant::now() + Duration::from_millis(req.sleep_ms as u64);
        // Sleep on a plain thread so the handler works on any executor (the CQ one included).
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        std::thread::spawn(move || {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
            let _ = tx.send(());
        });
        futures::future::select(rx, ctx.cancelled()).await;
        if ctx.is_cancelled() {
            return Err(Status::new(Code::Cancelled, "cancelled while sleeping"));
        }
    }
    if req.fail_code != 0 {
        return Err(Status::with_details(Code::from_i32(req.fail_code), req.fail_message, req.fail_details));
    }
    let payload = if req.response_size > 0 { vec![b'x'; req.response_size as usize] } else { req.payload };
    Ok(EchoResponse {
        message: req.message,
        seq: req.seq,
        payload,
    })
}

pub fn echo_service() -> grpcore::Service {
    ServiceBuilder::new(SERVICE).add_unary(&UNARY, unary_echo).build()
}

pub fn start_echo_server(env: &Environment) -> Server {
    ServerBuilder::new(env)
        .register_service(echo_service())
        .bind("127.0.0.1:0")
        .build()
        .expect("start echo server")
}

/// A peer process killed when dropped.
pub struct Peer {
    pub child: Child,
    pub port: u16,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo_path(rel: &str) -> String {
    format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))
}

pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Starts the Python grpcio Echo server and waits (bounded) for its port.
pub fn python_server(extra_args: &[&str]) -> Peer {
    let mut child = Command::new(python())
        .arg(repo_path("tests/peers/python/echo_server.py"))
        .args(extra_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the Python echo server (is python3 with grpcio installed? run scripts/setup.sh)");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the Python echo server did not print its port within 60 s");
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line from the Python server: {line:?}"));
    Peer { child, port }
}

/// Runs the Python grpcio client's `cases` against `target`; returns (success, output).
pub fn python_client(target: &str, cases: &[&str]) -> (bool, String) {
    let mut child = Command::new(python())
        .arg(repo_path("tests/peers/python/echo_client.py"))
        .arg(target)
        .args(cases)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python echo client");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
