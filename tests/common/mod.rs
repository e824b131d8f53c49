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

/// Sleeps on grpcore's own timer (no runtime needed); returns false if the call was
/// cancelled first.
pub async fn sleep_unless_cancelled(ctx: &ServerContext, ms: i32) -> bool {
    if ms <= 0 {
        return true;
    }
    let timer = grpcore::timer::sleep(Duration::from_millis(ms as u64));
    futures::future::select(timer, std::pin::pin!(ctx.cancelled())).await;
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

pub async fn client_stream_echo(mut requests: RequestStream<EchoRequest>, ctx: ServerContext) -> Result<EchoResponse, Status> {
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

pub async fn server_stream_echo(req: EchoRequest, mut sink: ServerSink<EchoResponse>, ctx: ServerContext) -> Result<(), Status> {
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
    mut requests: RequestStream<EchoRequest>,
    mut sink: ServerSink<EchoResponse>,
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

/// [`bidi_echo`] on the joint API: each echo goes out with the receive of the next request,
/// in one batch ([`ServerSink::send_and_receive`]).
pub async fn bidi_joint_echo(
    mut requests: RequestStream<EchoRequest>,
    mut sink: ServerSink<EchoResponse>,
    ctx: ServerContext,
) -> Result<(), Status> {
    echo_metadata(&ctx);
    let mut next = requests.message().await?;
    while let Some(req) = next {
        if !sleep_unless_cancelled(&ctx, req.sleep_ms).await {
            return Err(Status::new(Code::Cancelled, "cancelled"));
        }
        if req.fail_code != 0 {
            return Err(failure(&req));
        }
        let payload = response_payload(&req);
        let echo = EchoResponse {
            message: req.message,
            seq: req.seq,
            payload,
        };
        next = sink.send_and_receive(echo, &mut requests).await?;
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

/// [`echo_service`] whose `Bidi` answers on the joint API ([`bidi_joint_echo`]).
pub fn joint_echo_service() -> grpcore::Service {
    ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, unary_echo)
        .add_client_streaming(&CLIENT_STREAM, client_stream_echo)
        .add_server_streaming(&SERVER_STREAM, server_stream_echo)
        .add_duplex(&BIDI, bidi_joint_echo)
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

/// Starts another Python peer server (`tests/peers/python/<script>`) that announces
/// `PORT <n>`, and waits (bounded) for its port.
pub fn python_peer_server(script: &str, args: &[&str]) -> Peer {
    peer_server(&python(), &format!("tests/peers/python/{script}"), args)
}

/// A command running the Python peer `tests/peers/python/{script}`.
pub fn python_script(script: &str) -> Command {
    let mut command = Command::new(python());
    command.arg(repo_path(&format!("tests/peers/python/{script}")));
    command
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
    const SETUP: &str = "the test peers (grpcio and friends from PyPI, @grpc/grpc-js from npm) are \
                         installed by `bash scripts/setup.sh`; its errors, if any, are above";
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{script} did not print its port within 60 s ({SETUP})"));
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line from {script}: {line:?} ({SETUP})"));
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
    let reply = response.response().await.unwrap();
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
    /// What each connection carried, client → server and server → client.
    captured: Captured,
    /// How many gRPC messages each direction of each connection had when last read.
    seen: std::sync::Mutex<Vec<(usize, usize)>>,
}

type Captured = std::sync::Arc<std::sync::Mutex<Vec<(Vec<u8>, Vec<u8>)>>>;

/// One gRPC message as it crossed the wire (plaintext HTTP/2, DATA frames).
#[derive(Debug)]
pub struct WireMessage {
    /// The message's compressed flag (the first byte of its 5-byte prefix).
    pub compressed: bool,
    /// Its bytes as sent, compressed or not.
    pub body: Vec<u8>,
}

impl WireMessage {
    /// The format of the body: "gzip" (RFC 1952 magic), "deflate" (a zlib header, what gRPC's
    /// "deflate" sends), "identity" when the flag says uncompressed, else "unknown".
    pub fn format(&self) -> &'static str {
        let b = &self.body;
        if !self.compressed {
            "identity"
        } else if b.len() >= 3 && b[..3] == [0x1f, 0x8b, 8] {
            "gzip"
        } else if b.len() >= 2 && b[0] & 0x0f == 8 && (u16::from(b[0]) << 8 | u16::from(b[1])) % 31 == 0 {
            "deflate"
        } else {
            "unknown"
        }
    }
}

/// The gRPC messages in one direction of a plaintext HTTP/2 connection, in the order they
/// completed (DATA frames of every stream, reassembled per stream).
fn grpc_messages(bytes: &[u8], from_client: bool) -> Vec<WireMessage> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut pos = if from_client && bytes.starts_with(PREFACE) { PREFACE.len() } else { 0 };
    let mut streams: std::collections::HashMap<u32, Vec<u8>> = Default::default();
    let mut out = Vec::new();
    while pos + 9 <= bytes.len() {
        let len = (usize::from(bytes[pos]) << 16) | (usize::from(bytes[pos + 1]) << 8) | usize::from(bytes[pos + 2]);
        let (kind, flags) = (bytes[pos + 3], bytes[pos + 4]);
        let stream = u32::from_be_bytes(bytes[pos + 5..pos + 9].try_into().unwrap()) & 0x7fff_ffff;
        if pos + 9 + len > bytes.len() {
            break; // a frame still on its way
        }
        let mut payload = &bytes[pos + 9..pos + 9 + len];
        pos += 9 + len;
        if kind != 0 {
            continue; // not DATA
        }
        if flags & 0x8 != 0 && !payload.is_empty() {
            let pad = usize::from(payload[0]);
            payload = &payload[1..payload.len().saturating_sub(pad)];
        }
        let buf = streams.entry(stream).or_default();
        buf.extend_from_slice(payload);
        while buf.len() >= 5 {
            let n = u32::from_be_bytes(buf[1..5].try_into().unwrap()) as usize;
            if buf.len() < 5 + n {
                break;
            }
            out.push(WireMessage { compressed: buf[0] == 1, body: buf[5..5 + n].to_vec() });
            buf.drain(..5 + n);
        }
    }
    out
}

impl ByteProxy {
    pub fn start(target_port: u16) -> ByteProxy {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, down) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (u, d) = (up.clone(), down.clone());
        let captured: Captured = Default::default();
        let cap = captured.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target_port)) else { continue };
                let conn = {
                    let mut c = cap.lock().unwrap();
                    c.push((Vec::new(), Vec::new()));
                    c.len() - 1
                };
                let pipe = |mut from: std::net::TcpStream, mut to: std::net::TcpStream, count: Arc<AtomicU64>, up: bool| {
                    let cap = cap.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        loop {
                            match std::io::Read::read(&mut from, &mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    {
                                        let mut c = cap.lock().unwrap();
                                        let dir = if up { &mut c[conn].0 } else { &mut c[conn].1 };
                                        dir.extend_from_slice(&buf[..n]);
                                    }
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
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap(), u.clone(), true);
                pipe(server, client, d.clone(), false);
            }
        });
        ByteProxy { port, up, down, captured, seen: Default::default() }
    }

    /// How many TCP connections the proxy has accepted and forwarded so far.
    pub fn connections(&self) -> usize {
        self.captured.lock().unwrap().len()
    }

    /// The HTTP/2 frames (type, payload) the server sent on connection `conn` so far
    /// (plaintext only), e.g. to find a GOAWAY.
    pub fn frames_down(&self, conn: usize) -> Vec<(u8, Vec<u8>)> {
        let captured = self.captured.lock().unwrap();
        let bytes = &captured[conn].1;
        let mut frames = Vec::new();
        let mut pos = 0;
        while pos + 9 <= bytes.len() {
            let len = (usize::from(bytes[pos]) << 16) | (usize::from(bytes[pos + 1]) << 8) | usize::from(bytes[pos + 2]);
            if pos + 9 + len > bytes.len() {
                break;
            }
            frames.push((bytes[pos + 3], bytes[pos + 9..pos + 9 + len].to_vec()));
            pos += 9 + len;
        }
        frames
    }

    /// The gRPC messages that crossed since the last call (all of them the first time),
    /// client → server and server → client, for plaintext connections: what was really
    /// sent, with its compressed flag and its bytes as compressed.
    pub fn new_messages(&self) -> (Vec<WireMessage>, Vec<WireMessage>) {
        let captured = self.captured.lock().unwrap();
        let mut seen = self.seen.lock().unwrap();
        seen.resize(captured.len(), (0, 0));
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for ((c_up, c_down), (s_up, s_down)) in captured.iter().zip(seen.iter_mut()) {
            let u = grpc_messages(c_up, true);
            let d = grpc_messages(c_down, false);
            let (nu, nd) = (u.len(), d.len());
            up.extend(u.into_iter().skip(*s_up));
            down.extend(d.into_iter().skip(*s_down));
            *s_up = nu;
            *s_down = nd;
        }
        (up, down)
    }

    /// Bytes forwarded client → server and server → client so far.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        (self.up.load(Ordering::SeqCst), self.down.load(Ordering::SeqCst))
    }

    /// Runs `f` and returns the bytes it moved each way.
    ///
    /// No wait is needed once `f` returns: a copier counts each chunk before it forwards
    /// it, so the request bytes were counted before the server could answer, and the
    /// response bytes before the client could see them. Only small control frames that
    /// follow a call (window updates, pings) may land in this or the next measurement.
    pub fn measure(&self, f: impl FnOnce()) -> (u64, u64) {
        let (u0, d0) = self.counts();
        f();
        let (u1, d1) = self.counts();
        (u1 - u0, d1 - d0)
    }
}

/// Asserts that `messages` (one direction of a [`ByteProxy::new_messages`]) hold at least
/// one message and that each message of more than 64 bytes on the wire, or each compressed
/// one, went as `format` ("gzip", "deflate" or "identity"): what was actually sent, not
/// just how many bytes.
pub fn assert_wire_format(messages: &[WireMessage], format: &str, what: &str) {
    let formats: Vec<(&str, usize)> = messages.iter().map(|m| (m.format(), m.body.len())).collect();
    assert!(!messages.is_empty(), "{what}: no gRPC message seen on the wire");
    let relevant: Vec<_> = formats.iter().filter(|(f, n)| *n > 64 || *f != "identity").collect();
    assert!(!relevant.is_empty(), "{what}: no message of more than 64 bytes: {formats:?}");
    assert!(relevant.iter().all(|(f, _)| *f == format), "{what}: want {format}, on the wire (format, bytes): {formats:?}");
}

/// A unix socket address no one listens on yet, private to this process and `name`: for a
/// server that comes up later. (A TCP port found free and released could be taken by any
/// other process on a busy machine before the server binds it again.)
pub fn fresh_unix_address(name: &str) -> String {
    let path = std::env::temp_dir().join(format!("grpcore-{name}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    format!("unix:{}", path.display())
}

/// A highly compressible request of `n` bytes of payload.
pub fn compressible(n: usize) -> EchoRequest {
    EchoRequest {
        message: "compress me".into(),
        payload: vec![b'x'; n],
        ..Default::default()
    }
}
