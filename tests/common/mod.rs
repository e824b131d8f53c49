//! Shared by the integration tests: the `grpcore.test.Echo` service (tests/proto/echo.proto)
//! as hand-written prost messages, a grpcore implementation of it with the same semantics as
//! the Python peer (tests/peers/python/echo_server.py), and helpers that run the peers.
#![allow(dead_code)]

/// TLS test certificates and TLS variants of the helpers below.
pub mod tls;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use grpcore::{
    Code, Environment, Metadata, Method, ProstCodec, RequestStream, Server, ServerBuilder, ServerContext, ServerSink,
    ServiceBuilder, Status,
};

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
pub const CLIENT_STREAM: Method<EchoRequest, EchoResponse, ProstCodec> =
    Method::client_streaming("/grpcore.test.Echo/ClientStream");
pub const SERVER_STREAM: Method<EchoRequest, EchoResponse, ProstCodec> =
    Method::server_streaming("/grpcore.test.Echo/ServerStream");
pub const BIDI: Method<EchoRequest, EchoResponse, ProstCodec> = Method::duplex("/grpcore.test.Echo/Bidi");

/// Sleeps without depending on any runtime (a plain thread fires a oneshot); returns false
/// if the call was cancelled first.
pub async fn sleep_unless_cancelled(ctx: &ServerContext, ms: i32) -> bool {
    if ms <= 0 {
        return true;
    }
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(ms as u64));
        let _ = tx.send(());
    });
    futures::future::select(rx, ctx.cancelled()).await;
    !ctx.is_cancelled()
}

fn failure(req: &EchoRequest) -> Status {
    Status::with_details(Code::from_i32(req.fail_code), req.fail_message.clone(), req.fail_details.clone())
}

fn response_payload(req: &EchoRequest) -> Vec<u8> {
    if req.response_size > 0 {
        vec![b'x'; req.response_size as usize]
    } else {
        req.payload.clone()
    }
}

pub async fn client_stream_echo(mut requests: RequestStream<EchoRequest, ProstCodec>, ctx: ServerContext) -> Result<EchoResponse, Status> {
    echo_metadata(&ctx);
    let (mut messages, mut payloads, mut sized) = (Vec::new(), Vec::new(), None);
    while let Some(req) = requests.message().await? {
        if !sleep_unless_cancelled(&ctx, req.sleep_ms).await {
            return Err(Status::new(Code::Cancelled, "cancelled"));
        }
        if req.fail_code != 0 {
            return Err(failure(&req));
        }
        messages.push(req.message);
        payloads.extend(req.payload);
        if req.response_size > 0 {
            sized = Some(req.response_size as usize);
        }
    }
    Ok(EchoResponse {
        seq: messages.len() as i64,
        message: messages.join(","),
        payload: sized.map_or(payloads, |n| vec![b'x'; n]),
    })
}

pub async fn server_stream_echo(req: EchoRequest, mut sink: ServerSink<EchoResponse, ProstCodec>, ctx: ServerContext) -> Result<(), Status> {
    echo_metadata(&ctx);
    let payload = response_payload(&req);
    for i in 0..req.seq.max(0) {
        if !sleep_unless_cancelled(&ctx, req.sleep_ms).await {
            return Err(Status::new(Code::Cancelled, "cancelled"));
        }
        sink.send(EchoResponse {
            message: req.message.clone(),
            seq: i,
            payload: payload.clone(),
        })
        .await?;
    }
    if req.fail_code != 0 {
        return Err(failure(&req));
    }
    Ok(())
}

pub async fn bidi_echo(
    mut requests: RequestStream<EchoRequest, ProstCodec>,
    mut sink: ServerSink<EchoResponse, ProstCodec>,
    ctx: ServerContext,
) -> Result<(), Status> {
    echo_metadata(&ctx);
    while let Some(req) = requests.next().await {
        let req = req?;
        if !sleep_unless_cancelled(&ctx, req.sleep_ms).await {
            return Err(Status::new(Code::Cancelled, "cancelled"));
        }
        if req.fail_code != 0 {
            return Err(failure(&req));
        }
        let payload = response_payload(&req);
        sink.send(EchoResponse {
            message: req.message,
            seq: req.seq,
            payload,
        })
        .await?;
    }
    Ok(())
}

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
    if !sleep_unless_cancelled(&ctx, req.sleep_ms).await {
        return Err(Status::new(Code::Cancelled, "cancelled while sleeping"));
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
    ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, unary_echo)
        .add_client_streaming(&CLIENT_STREAM, client_stream_echo)
        .add_server_streaming(&SERVER_STREAM, server_stream_echo)
        .add_duplex(&BIDI, bidi_echo)
        .build()
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
    peer_server(&python(), "tests/peers/python/echo_server.py", extra_args)
}

/// Starts the Node @grpc/grpc-js Echo server and waits (bounded) for its port.
pub fn node_server(extra_args: &[&str]) -> Peer {
    peer_server("node", "tests/peers/node/echo_server.js", extra_args)
}

/// Runs the Node @grpc/grpc-js client's `cases` against `target`; returns (success, output).
pub fn node_client_with(options: &[&str], target: &str, cases: &[&str]) -> (bool, String) {
    peer_client("node", "tests/peers/node/echo_client.js", options, target, cases)
}

fn peer_server(program: &str, script: &str, extra_args: &[&str]) -> Peer {
    let mut child = Command::new(program)
        .arg(repo_path(script))
        .args(extra_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program} {script} (run scripts/setup.sh to install the peers): {e}"));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{script} did not print its port within 60 s"));
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line from {script}: {line:?}"));
    Peer { child, port }
}

/// Runs the Python grpcio client's `cases` against `target`; returns (success, output).
pub fn python_client(target: &str, cases: &[&str]) -> (bool, String) {
    python_client_with(&[], target, cases)
}

/// Like [`python_client`], with client options (e.g. `--compression gzip`) first.
pub fn python_client_with(options: &[&str], target: &str, cases: &[&str]) -> (bool, String) {
    peer_client(&python(), "tests/peers/python/echo_client.py", options, target, cases)
}

fn peer_client(program: &str, script: &str, options: &[&str], target: &str, cases: &[&str]) -> (bool, String) {
    let mut child = Command::new(program)
        .arg(repo_path(script))
        .args(options)
        .arg(target)
        .args(cases)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program} {script}: {e}"));
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

fn echo_md() -> grpcore::CallOptions {
    let mut md = Metadata::new();
    md.append("x-echo-kind", "stream").unwrap();
    md.append_bin("x-echo-raw-bin", vec![0u8, 0xff]).unwrap();
    grpcore::CallOptions::new()
        .metadata(md)
        .timeout(Duration::from_secs(30))
        .wait_for_ready(true)
}

fn failing(seq: i64) -> EchoRequest {
    EchoRequest {
        seq,
        fail_code: Code::Aborted.as_i32(),
        fail_message: "stop here".into(),
        fail_details: b"\x01\x02details".to_vec(),
        ..Default::default()
    }
}

fn assert_failure(err: &grpcore::Error) {
    let grpcore::Error::Rpc(status) = err else { panic!("expected a status, got {err}") };
    assert_eq!(status.code(), Code::Aborted, "{status}");
    assert_eq!(status.message(), "stop here");
    assert_eq!(status.details(), b"\x01\x02details");
}

/// All four call kinds against an Echo server at `channel`: order and content checked by
/// sequence numbers, metadata and trailers, statuses mid-stream. Runtime-agnostic: the
/// same body runs under tokio, `block_on` and the CQ executor.
pub async fn check_all_call_kinds(channel: grpcore::Channel) {

    // Unary.
    let reply = channel.unary(&UNARY, &request("one", 1), echo_md()).await.unwrap();
    assert_eq!((reply.message().message.as_str(), reply.message().seq), ("one", 1));
    assert_eq!(reply.initial_metadata().get("x-echo-kind"), Some("stream"));

    // Client streaming: five requests, one answer; headers and trailers.
    let (mut sink, response) = channel.client_streaming(&CLIENT_STREAM, echo_md());
    for i in 0..5 {
        sink.send(request(&format!("m{i}"), i)).await.unwrap();
    }
    sink.close().await.unwrap();
    let reply = response.await.unwrap();
    assert_eq!(reply.message().message, "m0,m1,m2,m3,m4");
    assert_eq!(reply.message().seq, 5);
    assert_eq!(reply.initial_metadata().get_bin("x-echo-raw-bin"), Some(&[0u8, 0xff][..]));
    assert_eq!(reply.trailing_metadata().get("x-trailer-kind"), Some("stream"));

    // Client streaming that fails mid-stream.
    let (mut sink, response) = channel.client_streaming(&CLIENT_STREAM, echo_md());
    sink.send(request("fine", 0)).await.unwrap();
    sink.send(failing(1)).await.unwrap();
    let _ = sink.close().await; // may race with the server's status
    assert_failure(&response.await.unwrap_err());

    // Server streaming: numbered messages in order, trailers at the end.
    let mut req = request("srv", 7);
    req.payload = vec![9; 100];
    let mut stream = channel.server_streaming(&SERVER_STREAM, &req, echo_md());
    assert_eq!(stream.initial_metadata().await.unwrap().get("x-echo-kind"), Some("stream"));
    let mut seqs = Vec::new();
    while let Some(item) = stream.next().await {
        let item = item.unwrap();
        assert_eq!((item.message.as_str(), item.payload.len()), ("srv", 100));
        seqs.push(item.seq);
    }
    assert_eq!(seqs, (0..7).collect::<Vec<_>>());
    assert_eq!(stream.trailing_metadata().unwrap().get("x-trailer-kind"), Some("stream"));

    // Server streaming ending with an error after five messages.
    let mut req = failing(5);
    req.message = "then fail".into();
    let mut stream = channel.server_streaming(&SERVER_STREAM, &req, echo_md());
    for i in 0..5 {
        assert_eq!(stream.next().await.unwrap().unwrap().seq, i);
    }
    assert_failure(&stream.next().await.unwrap().unwrap_err());
    assert!(stream.next().await.is_none());

    // Bidi: ping-pong in order, then half-close ends the responses.
    let (mut sink, mut stream) = channel.duplex(&BIDI, echo_md());
    for i in 0..20 {
        sink.send(request(&format!("b{i}"), i)).await.unwrap();
        let item = stream.next().await.unwrap().unwrap();
        assert_eq!((item.message, item.seq), (format!("b{i}"), i));
    }
    sink.close().await.unwrap();
    assert!(stream.next().await.is_none());
    assert_eq!(stream.trailing_metadata().unwrap().get("x-trailer-kind"), Some("stream"));

    // Bidi: a burst, then a failing request mid-stream ends the stream with its status.
    let (mut sink, mut stream) = channel.duplex(&BIDI, echo_md());
    for i in 0..3 {
        sink.send(request("burst", i)).await.unwrap();
    }
    sink.send(failing(3)).await.unwrap();
    for i in 0..3 {
        assert_eq!(stream.next().await.unwrap().unwrap().seq, i);
    }
    assert_failure(&stream.next().await.unwrap().unwrap_err());
    // Sending after the server ended the call fails with a clear error, never a hang.
    let mut last = Ok(());
    for _ in 0..10 {
        last = sink.send(request("late", 9)).await;
        if last.is_err() {
            break;
        }
    }
    assert!(last.is_err(), "sends after the end must fail");
}

/// A TCP proxy on 127.0.0.1 that counts the bytes it forwards each way, to check what
/// really crosses the wire (e.g. that compression shrank it).
pub struct ByteProxy {
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicU64>,
    down: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl ByteProxy {
    pub fn start(target_port: u16) -> ByteProxy {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, down) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (u, d) = (up.clone(), down.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target_port)) else { continue };
                let pipe = |mut from: std::net::TcpStream, mut to: std::net::TcpStream, count: Arc<AtomicU64>| {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        loop {
                            match std::io::Read::read(&mut from, &mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    count.fetch_add(n as u64, Ordering::SeqCst);
                                    if std::io::Write::write_all(&mut to, &buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                };
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap(), u.clone());
                pipe(server, client, d.clone());
            }
        });
        ByteProxy { port, up, down }
    }

    /// Bytes forwarded client → server and server → client so far.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        (self.up.load(Ordering::SeqCst), self.down.load(Ordering::SeqCst))
    }

    /// Runs `f` and returns the bytes it moved each way.
    pub fn measure(&self, f: impl FnOnce()) -> (u64, u64) {
        let (u0, d0) = self.counts();
        f();
        std::thread::sleep(Duration::from_millis(50)); // let the copier threads catch up
        let (u1, d1) = self.counts();
        (u1 - u0, d1 - d0)
    }
}

/// A highly compressible request of `n` bytes of payload.
pub fn compressible(n: usize) -> EchoRequest {
    EchoRequest {
        message: "compress me".into(),
        payload: vec![b'x'; n],
        ..Default::default()
    }
}
