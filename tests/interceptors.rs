//! Interceptors on both sides, all four kinds of call: what they see, metadata they change,
//! refusals (seen by grpcio and grpc-js clients; the handler never runs), and the end of
//! every call with its status, however it ended.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use grpcore::{
    CallEnd, CallOptions, ChannelBuilder, ClientCallInfo, ClientInterceptor, Code, Environment, Metadata, MethodKind,
    ServerBuilder, ServerCallInfo, ServerInterceptor, ServiceBuilder, Status,
};

/// What a start hook saw: method, kind, whether a deadline was set, and the peer (server)
/// or target (client).
type Start = (String, MethodKind, bool, String);

/// Records what it sees; adds `x-echo-intercepted` (which the echo handlers send back) and
/// refuses calls that carry `x-refuse`.
#[derive(Clone, Default)]
struct Recorder {
    registered: Arc<Mutex<Vec<(usize, String, MethodKind)>>>,
    starts: Arc<Mutex<Vec<Start>>>,
    ends: Arc<Mutex<Vec<CallEnd>>>,
}

impl Recorder {
    /// Waits (bounded) until `n` ends were seen; returns them.
    fn ends(&self, n: usize) -> Vec<CallEnd> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ends = self.ends.lock().unwrap().clone();
            if ends.len() >= n || Instant::now() > deadline {
                assert_eq!(ends.len(), n, "ends seen: {ends:?}");
                return ends;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl ServerInterceptor for Recorder {
    fn on_register(&self, index: usize, method: &str, kind: MethodKind) {
        self.registered.lock().unwrap().push((index, method.to_string(), kind));
    }

    async fn on_start(&self, call: &mut ServerCallInfo) -> Result<(), Status> {
        self.starts.lock().unwrap().push((call.method().to_string(), call.kind(), call.deadline().is_some(), call.peer()));
        if call.metadata().get("x-refuse").is_some() {
            return Err(Status::new(Code::PermissionDenied, "refused by the interceptor"));
        }
        call.metadata_mut().append("x-echo-intercepted", "server").unwrap();
        Ok(())
    }

    fn on_end(&self, end: &CallEnd) {
        self.ends.lock().unwrap().push(end.clone());
    }
}

impl ClientInterceptor for Recorder {
    async fn on_start(&self, call: &mut ClientCallInfo) -> Result<(), Status> {
        self.starts.lock().unwrap().push((call.method().to_string(), call.kind(), call.deadline().is_some(), call.target().to_string()));
        if call.metadata().get("x-refuse").is_some() {
            return Err(Status::new(Code::PermissionDenied, "refused on the client"));
        }
        call.metadata_mut().append("x-echo-intercepted", "client").unwrap();
        Ok(())
    }

    fn on_end(&self, end: &CallEnd) {
        self.ends.lock().unwrap().push(end.clone());
    }
}

/// The echo service, counting the calls its handlers run.
fn counted_echo_server(env: &Environment, interceptor: Recorder) -> (grpcore::Server, Arc<AtomicUsize>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let (r1, r2, r3, r4) = (runs.clone(), runs.clone(), runs.clone(), runs.clone());
    let service = ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, move |req, ctx| {
            r1.fetch_add(1, Ordering::SeqCst);
            unary_echo(req, ctx)
        })
        .add_client_streaming(&CLIENT_STREAM, move |reqs, ctx| {
            r2.fetch_add(1, Ordering::SeqCst);
            client_stream_echo(reqs, ctx)
        })
        .add_server_streaming(&SERVER_STREAM, move |req, sink, ctx| {
            r3.fetch_add(1, Ordering::SeqCst);
            server_stream_echo(req, sink, ctx)
        })
        .add_duplex(&BIDI, move |reqs, sink, ctx| {
            r4.fetch_add(1, Ordering::SeqCst);
            bidi_echo(reqs, sink, ctx)
        })
        .build();
    let server = ServerBuilder::new(env)
        .intercept(interceptor)
        .register_service(service)
        .bind("127.0.0.1:0")
        .build()
        .unwrap();
    (server, runs)
}

fn md(pairs: &[(&str, &str)]) -> Metadata {
    let mut md = Metadata::new();
    for (k, v) in pairs {
        md.append(k, v).unwrap();
    }
    md
}

/// Runs one call of each kind; returns the value of `x-echo-intercepted` each handler saw
/// (echoed back in the response headers).
async fn one_of_each(channel: &grpcore::Channel, opts: CallOptions) -> Vec<Option<String>> {
    let header = |md: &Metadata| md.get("x-echo-intercepted").map(str::to_string);
    let mut seen = Vec::new();
    let reply = channel.unary(&UNARY, &request("u", 1), opts.clone()).await.unwrap();
    seen.push(header(reply.initial_metadata()));

    let (mut sink, response) = channel.client_streaming(&CLIENT_STREAM, opts.clone());
    sink.send(request("c", 1)).await.unwrap();
    sink.close().await.unwrap();
    seen.push(header(response.response().await.unwrap().initial_metadata()));

    let mut stream = channel.server_streaming(&SERVER_STREAM, &request("s", 2), opts.clone());
    seen.push(header(stream.initial_metadata().await.unwrap()));
    while let Some(item) = stream.next().await {
        item.unwrap();
    }

    let (mut sink, mut stream) = channel.duplex(&BIDI, opts);
    sink.send(request("d", 1)).await.unwrap();
    seen.push(header(stream.initial_metadata().await.unwrap()));
    stream.next().await.unwrap().unwrap();
    sink.close().await.unwrap();
    assert!(stream.next().await.is_none());
    seen
}

#[test]
fn a_server_interceptor_sees_every_kind_and_changes_the_metadata_handlers_see() {
    let env = Environment::new(1);
    let recorder = Recorder::default();
    let (server, runs) = counted_echo_server(&env, recorder.clone());
    let port = server.port();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{port}")).unwrap();
    let opts = CallOptions::new().timeout(Duration::from_secs(20));
    let seen = futures::executor::block_on(one_of_each(&channel, opts));
    assert_eq!(seen, vec![Some("server".to_string()); 4], "every handler saw the interceptor's entry");
    assert_eq!(runs.load(Ordering::SeqCst), 4);

    let starts = recorder.starts.lock().unwrap().clone();
    let kinds: Vec<_> = starts.iter().map(|s| (s.0.as_str(), s.1)).collect();
    assert_eq!(
        kinds,
        vec![
            ("/grpcore.test.Echo/Unary", MethodKind::Unary),
            ("/grpcore.test.Echo/ClientStream", MethodKind::ClientStreaming),
            ("/grpcore.test.Echo/ServerStream", MethodKind::ServerStreaming),
            ("/grpcore.test.Echo/Bidi", MethodKind::Duplex),
        ]
    );
    assert!(starts.iter().all(|s| s.2), "every call carried its deadline");
    // Each method was registered once, before any call, and its calls carry its index.
    let registered = recorder.registered.lock().unwrap().clone();
    assert_eq!(registered.len(), 4, "{registered:?}");
    assert!(starts.iter().all(|s| s.3.contains("127.0.0.1")), "peers: {starts:?}");

    // Each end, with the messages that went each way (server streaming answers seq = 2
    // messages).
    let ends = recorder.ends(4);
    let by_kind = |k: MethodKind| ends.iter().find(|e| e.kind() == k).unwrap();
    for e in &ends {
        assert_eq!(e.code(), Code::Ok, "{e:?}");
        let index = e.method_index().expect("a server call has a method index");
        assert_eq!(registered[index].1, e.method(), "{registered:?}");
        assert_eq!(registered[index].2, e.kind());
    }
    assert_eq!((by_kind(MethodKind::Unary).messages_received(), by_kind(MethodKind::Unary).messages_sent()), (1, 1));
    assert_eq!(
        (by_kind(MethodKind::ClientStreaming).messages_received(), by_kind(MethodKind::ClientStreaming).messages_sent()),
        (1, 1)
    );
    assert_eq!(
        (by_kind(MethodKind::ServerStreaming).messages_received(), by_kind(MethodKind::ServerStreaming).messages_sent()),
        (1, 2)
    );
    assert_eq!((by_kind(MethodKind::Duplex).messages_received(), by_kind(MethodKind::Duplex).messages_sent()), (1, 1));
}

/// Runs a peer's raw client (`tests/peers/*/raw_call.*`); returns the status code number.
fn peer_call(program: &str, script: &str, target: &str, kind: &str, path: &str, metadata: &[&str]) -> i32 {
    let out = Command::new(program)
        .arg(format!("{}/{script}", env!("CARGO_MANIFEST_DIR")))
        .args([target, kind, path])
        .args(metadata)
        .output()
        .unwrap_or_else(|e| panic!("{program} {script}: {e} (run scripts/setup.sh to install the peers)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.starts_with("CODE ")).unwrap_or_else(|| {
        panic!("{script} printed no status: {stdout} {}", String::from_utf8_lossy(&out.stderr))
    });
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_refusal_reaches_grpcio_and_grpc_js_clients_and_no_handler_runs() {
    let env = Environment::new(1);
    let recorder = Recorder::default();
    let (server, runs) = counted_echo_server(&env, recorder.clone());
    let target = format!("127.0.0.1:{}", server.port());
    let calls = [
        ("unary", "/grpcore.test.Echo/Unary"),
        ("client_stream", "/grpcore.test.Echo/ClientStream"),
        ("server_stream", "/grpcore.test.Echo/ServerStream"),
        ("bidi", "/grpcore.test.Echo/Bidi"),
    ];
    let peers = [(python(), "tests/peers/python/raw_call.py"), ("node".to_string(), "tests/peers/node/raw_call.js")];
    for (program, script) in &peers {
        for (kind, path) in calls {
            let code = peer_call(program, script, &target, kind, path, &["x-refuse=1"]);
            assert_eq!(code, Code::PermissionDenied as i32, "{script} {kind}");
        }
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0, "no handler ran for a refused call");
    // The same calls without the refusal reach the handlers.
    for (program, script) in &peers {
        for (kind, path) in calls {
            assert_eq!(peer_call(program, script, &target, kind, path, &[]), 0, "{script} {kind}");
        }
    }
    assert_eq!(runs.load(Ordering::SeqCst), 8);
    let ends = recorder.ends(16);
    assert_eq!(ends.iter().filter(|e| e.code() == Code::PermissionDenied).count(), 8);
    assert_eq!(ends.iter().filter(|e| e.code() == Code::Ok).count(), 8);
}

#[test]
fn the_server_sees_how_every_call_ended() {
    let env = Environment::new(2);
    let recorder = Recorder::default();
    let (server, _runs) = counted_echo_server(&env, recorder.clone());
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let opts = || CallOptions::new().timeout(Duration::from_secs(20));

    // OK, a handler's error, a panic.
    channel.unary(&UNARY, &request("ok", 1), opts()).wait().unwrap();
    let failing = EchoRequest { fail_code: Code::NotFound as i32, fail_message: "nothing here".into(), ..request("f", 2) };
    assert_eq!(channel.unary(&UNARY, &failing, opts()).wait().unwrap_err().code(), Code::NotFound);
    assert_eq!(channel.unary(&UNARY, &request("panic", 3), opts()).wait().unwrap_err().code(), Code::Internal);
    // A client that cancels mid-stream.
    let mut stream = channel.server_streaming(&SERVER_STREAM, &EchoRequest { sleep_ms: 200, ..request("s", 50) }, opts());
    futures::executor::block_on(stream.next()).unwrap().unwrap();
    stream.cancel();
    drop(stream);
    // A deadline that expires while the handler sleeps.
    let slow = EchoRequest { sleep_ms: 5_000, ..request("slow", 5) };
    let err = channel.unary(&UNARY, &slow, CallOptions::new().timeout(Duration::from_millis(200))).wait().unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);

    let ends = recorder.ends(5);
    let codes: Vec<Code> = ends.iter().map(CallEnd::code).collect();
    for expected in [Code::Ok, Code::NotFound, Code::Internal, Code::Cancelled, Code::DeadlineExceeded] {
        assert!(codes.contains(&expected), "{expected:?} in {codes:?}");
    }
    let not_found = ends.iter().find(|e| e.code() == Code::NotFound).unwrap();
    assert_eq!(not_found.message(), "nothing here");
    let deadline = ends.iter().find(|e| e.code() == Code::DeadlineExceeded).unwrap();
    assert!(deadline.elapsed() >= Duration::from_millis(150), "{deadline:?}");
}

#[test]
fn service_interceptors_run_after_the_servers_and_only_for_their_service() {
    let env = Environment::new(1);
    let order = Arc::new(Mutex::new(Vec::new()));
    struct Named(&'static str, Arc<Mutex<Vec<&'static str>>>);
    impl ServerInterceptor for Named {
        async fn on_start(&self, _call: &mut ServerCallInfo) -> Result<(), Status> {
            self.1.lock().unwrap().push(self.0);
            Ok(())
        }
        fn on_end(&self, _end: &CallEnd) {
            self.1.lock().unwrap().push(self.0);
        }
    }
    let other = ServiceBuilder::new("grpcore.test.Other")
        .add_unary(&grpcore::Method::<EchoRequest, EchoResponse, grpcore::ProstCodec>::unary("/grpcore.test.Other/Unary"), unary_echo)
        .build();
    let server = ServerBuilder::new(&env)
        .intercept(Named("server-1", order.clone()))
        .intercept(Named("server-2", order.clone()))
        .register_service(echo_service().intercept(Named("service", order.clone())))
        .register_service(other)
        .bind("127.0.0.1:0")
        .build()
        .unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    channel.unary(&UNARY, &request("x", 1), CallOptions::new()).wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while order.lock().unwrap().len() < 6 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(*order.lock().unwrap(), vec!["server-1", "server-2", "service", "service", "server-2", "server-1"]);
    order.lock().unwrap().clear();
    const OTHER: grpcore::Method<EchoRequest, EchoResponse, grpcore::ProstCodec> = grpcore::Method::unary("/grpcore.test.Other/Unary");
    channel.unary(&OTHER, &request("y", 2), CallOptions::new()).wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while order.lock().unwrap().len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(*order.lock().unwrap(), vec!["server-1", "server-2", "server-2", "server-1"]);
}

#[test]
fn a_client_interceptors_metadata_reaches_a_grpcio_server_on_every_kind() {
    let env = Environment::new(1);
    let peer = python_server(&[]);
    let recorder = Recorder::default();
    let channel = ChannelBuilder::new(&env).intercept(recorder.clone()).connect(&format!("127.0.0.1:{}", peer.port)).unwrap();
    let seen = futures::executor::block_on(one_of_each(&channel, CallOptions::new().timeout(Duration::from_secs(20))));
    assert_eq!(seen, vec![Some("client".to_string()); 4], "grpcio echoed the interceptor's entry on every kind");
    let starts = recorder.starts.lock().unwrap().clone();
    assert!(starts.iter().all(|s| s.3 == format!("127.0.0.1:{}", peer.port)), "targets: {starts:?}");
    let ends = recorder.ends(4);
    assert!(ends.iter().all(|e| e.code() == Code::Ok), "{ends:?}");
    let server_streaming = ends.iter().find(|e| e.kind() == MethodKind::ServerStreaming).unwrap();
    assert_eq!((server_streaming.messages_sent(), server_streaming.messages_received()), (1, 2));
}

#[test]
fn a_client_refusal_sends_nothing() {
    let env = Environment::new(1);
    let server_side = Recorder::default();
    let (server, runs) = counted_echo_server(&env, server_side.clone());
    let recorder = Recorder::default();
    let channel = ChannelBuilder::new(&env).intercept(recorder.clone()).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let refused = CallOptions::new().metadata(md(&[("x-refuse", "1")]));
    let err = channel.unary(&UNARY, &request("x", 1), refused.clone()).wait().unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    let (mut sink, response) = channel.client_streaming(&CLIENT_STREAM, refused.clone());
    assert_eq!(sink.send_blocking(request("x", 1)).unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(response.wait().unwrap_err().code(), Code::PermissionDenied);
    let err = channel.server_streaming(&SERVER_STREAM, &request("x", 1), refused.clone()).into_blocking_iter().next().unwrap();
    assert_eq!(err.unwrap_err().code(), Code::PermissionDenied);
    let (_sink, stream) = channel.duplex(&BIDI, refused);
    assert_eq!(stream.into_blocking_iter().next().unwrap().unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(recorder.ends(4).iter().filter(|e| e.code() == Code::PermissionDenied).count(), 4);
    // Nothing reached the server: no interceptor start there, no handler. Checked after an
    // event, not a sleep: a call made after the refused ones, on the same connection and
    // served by the same single queue thread, gets its reply, so a refused call that had
    // reached the server would have been started there before it.
    channel.unary(&UNARY, &request("allowed", 2), CallOptions::new()).wait().unwrap();
    let starts = server_side.starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 1, "only the allowed call reached the server: {starts:?}");
    assert_eq!(starts[0].0, "/grpcore.test.Echo/Unary");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn the_client_sees_how_every_call_ended() {
    let env = Environment::new(2);
    let server = start_echo_server(&env);
    let recorder = Recorder::default();
    let channel = ChannelBuilder::new(&env).intercept(recorder.clone()).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let opts = || CallOptions::new().timeout(Duration::from_secs(20));
    channel.unary(&UNARY, &request("ok", 1), opts()).wait().unwrap();
    let failing = EchoRequest { fail_code: Code::Aborted as i32, fail_message: "try again".into(), ..request("f", 2) };
    channel.unary(&UNARY, &failing, opts()).wait().unwrap_err();
    // Cancelled by dropping the stream mid-way.
    let mut stream = channel.server_streaming(&SERVER_STREAM, &EchoRequest { sleep_ms: 200, ..request("s", 50) }, opts());
    futures::executor::block_on(stream.next()).unwrap().unwrap();
    drop(stream);
    // A deadline.
    let slow = EchoRequest { sleep_ms: 5_000, ..request("slow", 5) };
    channel.unary(&UNARY, &slow, CallOptions::new().timeout(Duration::from_millis(200))).wait().unwrap_err();
    // An upload dropped before close: cancelled.
    let (mut sink, response) = channel.client_streaming(&CLIENT_STREAM, opts());
    sink.send_blocking(request("c", 1)).unwrap();
    drop(sink);
    assert_eq!(response.wait().unwrap_err().code(), Code::Cancelled);

    let ends = recorder.ends(5);
    let codes: Vec<Code> = ends.iter().map(CallEnd::code).collect();
    assert_eq!(codes, vec![Code::Ok, Code::Aborted, Code::Cancelled, Code::DeadlineExceeded, Code::Cancelled]);
    assert_eq!(ends[1].message(), "try again");
    assert_eq!((ends[0].messages_sent(), ends[0].messages_received()), (1, 1));
    assert_eq!((ends[4].messages_sent(), ends[4].messages_received()), (1, 0));
}

/// A value an interceptor attaches to a call.
#[derive(Clone, Debug, PartialEq)]
struct RequestTag(String);

/// Attaches the request's `x-tag` to the call, and records the tag each call ended with.
#[derive(Clone, Default)]
struct Tagger {
    ended_with: Arc<Mutex<Vec<Option<RequestTag>>>>,
}

impl ServerInterceptor for Tagger {
    async fn on_start(&self, call: &mut ServerCallInfo) -> Result<(), Status> {
        if let Some(tag) = call.metadata().get("x-tag").map(str::to_string) {
            call.extensions_mut().insert(RequestTag(tag));
        }
        Ok(())
    }

    fn on_end(&self, end: &CallEnd) {
        self.ended_with.lock().unwrap().push(end.extensions().get::<RequestTag>().cloned());
    }
}

/// Copies the parent call's tag into a child call's metadata (`x-echo-tag`, which the echo
/// server sends back).
struct PassTag;

impl ClientInterceptor for PassTag {
    async fn on_start(&self, call: &mut ClientCallInfo) -> Result<(), Status> {
        if let Some(RequestTag(tag)) = call.parent_extension::<RequestTag>() {
            call.metadata_mut().append("x-echo-tag", &tag).unwrap();
        }
        Ok(())
    }
}

#[test]
fn extensions_reach_the_handler_the_end_and_the_handlers_child_calls() {
    let env = Environment::new(2);
    let backend = start_echo_server(&env);
    let child_channel =
        ChannelBuilder::new(&env).intercept(PassTag).connect(&format!("127.0.0.1:{}", backend.port())).unwrap();
    let tagger = Tagger::default();
    let front = ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, move |req: EchoRequest, ctx: grpcore::ServerContext| {
            let child_channel = child_channel.clone();
            async move {
                let seen_by_handler = ctx.extension::<RequestTag>().map(|t| t.0).unwrap_or_default();
                let child = child_channel
                    .unary(&UNARY, &req, CallOptions::new().parent(&ctx))
                    .await
                    .map_err(|e| e.status())?;
                let passed_on = child.initial_metadata().get("x-echo-tag").unwrap_or("").to_string();
                Ok(EchoResponse { message: format!("{seen_by_handler}|{passed_on}"), seq: req.seq, payload: vec![] })
            }
        })
        .build()
        .intercept(tagger.clone());
    let server = ServerBuilder::new(&env).register_service(front).bind("127.0.0.1:0").build().unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let reply = channel
        .unary(&UNARY, &request("x", 1), CallOptions::new().metadata(md(&[("x-tag", "t-42")])).timeout(Duration::from_secs(20)))
        .wait()
        .unwrap();
    assert_eq!(reply.message().message, "t-42|t-42", "the handler and the child call saw the tag");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tagger.ended_with.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(*tagger.ended_with.lock().unwrap(), vec![Some(RequestTag("t-42".into()))]);
}

/// Waits on another thread before it lets a call through (an interceptor that really awaits:
/// the chain leaves the queue thread's dispatch and resumes in a task).
struct Waits;

impl ServerInterceptor for Waits {
    async fn on_start(&self, call: &mut ServerCallInfo) -> Result<(), Status> {
        let (tx, rx) = futures::channel::oneshot::channel();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let _ = tx.send(());
        });
        rx.await.map_err(|_| Status::internal("the waiting thread went away"))?;
        call.metadata_mut().append("x-echo-waited", "yes").unwrap();
        Ok(())
    }
}

#[test]
fn an_interceptor_that_waits_resumes_every_kind() {
    let env = Environment::new(1);
    let server = ServerBuilder::new(&env).intercept(Waits).register_service(echo_service()).bind("127.0.0.1:0").build().unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let reply = channel.unary(&UNARY, &request("w", 1), CallOptions::new().timeout(Duration::from_secs(20))).wait().unwrap();
    assert_eq!(reply.initial_metadata().get("x-echo-waited"), Some("yes"));
    let seen = futures::executor::block_on(async {
        let calls = (0..20).map(|i| {
            let channel = channel.clone();
            async move { channel.unary(&UNARY, &request("w", i), CallOptions::new().timeout(Duration::from_secs(20))).await.unwrap().message().seq }
        });
        futures::future::join_all(calls).await
    });
    assert_eq!(seen, (0..20).collect::<Vec<i64>>());
    let mut stream = channel.server_streaming(&SERVER_STREAM, &request("s", 3), CallOptions::new().timeout(Duration::from_secs(20)));
    let n = futures::executor::block_on(async {
        let mut n = 0;
        while let Some(item) = stream.next().await {
            item.unwrap();
            n += 1;
        }
        n
    });
    assert_eq!(n, 3);
}

/// A client interceptor that really waits before it lets a call out, the way one fetching a
/// token does: on a tokio timer, which panics unless the hook runs in the caller's tokio
/// runtime. Waits `x-wait-ms` (default 20 ms), never finishes with `x-hang`, refuses with
/// `x-refuse`, and adds `x-echo-intercepted: waited` (the echo handlers send it back).
#[derive(Clone, Default)]
struct WaitsToStart {
    finished: Arc<AtomicUsize>,
    ends: Arc<Mutex<Vec<CallEnd>>>,
}

impl ClientInterceptor for WaitsToStart {
    async fn on_start(&self, call: &mut ClientCallInfo) -> Result<(), Status> {
        if call.metadata().get("x-hang").is_some() {
            std::future::pending::<()>().await;
        }
        let ms = call.metadata().get("x-wait-ms").map_or(20, |v| v.parse().unwrap());
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.finished.fetch_add(1, Ordering::SeqCst);
        if call.metadata().get("x-refuse").is_some() {
            return Err(Status::new(Code::PermissionDenied, "refused after waiting"));
        }
        call.metadata_mut().append("x-echo-intercepted", "waited").unwrap();
        Ok(())
    }

    fn on_end(&self, end: &CallEnd) {
        self.ends.lock().unwrap().push(end.clone());
    }
}

impl WaitsToStart {
    fn ends(&self, n: usize) -> Vec<CallEnd> {
        Recorder { ends: self.ends.clone(), ..Recorder::default() }.ends(n)
    }
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap()
}

#[test]
fn a_client_interceptor_that_waits_starts_every_kind_in_the_callers_runtime() {
    let env = Environment::new(1);
    let server_side = Recorder::default();
    let (server, runs) = counted_echo_server(&env, server_side);
    let waits = WaitsToStart::default();
    let channel = ChannelBuilder::new(&env).intercept(waits.clone()).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let rt = tokio_runtime();
    let seen = rt.block_on(one_of_each(&channel, CallOptions::new().timeout(Duration::from_secs(20))));
    // The server's interceptor adds its own entry after the client's: both arrive.
    assert_eq!(seen, vec![Some("waited".to_string()); 4], "every handler saw the waiting interceptor's entry");
    assert_eq!(waits.finished.load(Ordering::SeqCst), 4);
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    let ends = waits.ends(4);
    assert!(ends.iter().all(|e| e.code() == Code::Ok), "{ends:?}");
    let server_streaming = ends.iter().find(|e| e.kind() == MethodKind::ServerStreaming).unwrap();
    assert_eq!((server_streaming.messages_sent(), server_streaming.messages_received()), (1, 2));

    // A refusal after the wait: every kind fails with the interceptor's status, and nothing
    // reaches the server.
    let refused = CallOptions::new().metadata(md(&[("x-refuse", "1")]));
    let codes = rt.block_on(async {
        let unary = channel.unary(&UNARY, &request("x", 1), refused.clone()).await.unwrap_err().code();
        let (mut sink, response) = channel.client_streaming(&CLIENT_STREAM, refused.clone());
        let sent = sink.send(request("x", 1)).await.unwrap_err().code();
        let response = response.await.unwrap_err().code();
        let mut stream = channel.server_streaming(&SERVER_STREAM, &request("x", 1), refused.clone());
        let streamed = stream.next().await.unwrap().unwrap_err().code();
        assert!(stream.next().await.is_none());
        let (_sink, mut stream) = channel.duplex(&BIDI, refused);
        let duplex = stream.initial_metadata().await.unwrap_err().code();
        vec![unary, sent, response, streamed, duplex]
    });
    assert_eq!(codes, vec![Code::PermissionDenied; 5]);
    let refusals = waits.ends(8).iter().filter(|e| e.code() == Code::PermissionDenied).count();
    assert_eq!(refusals, 4);
    assert_eq!(runs.load(Ordering::SeqCst), 4, "no refused call reached a handler");
}

#[test]
fn a_call_dropped_or_cancelled_while_its_interceptor_waits_is_never_sent() {
    let env = Environment::new(1);
    let server_side = Recorder::default();
    let (server, runs) = counted_echo_server(&env, server_side.clone());
    let waits = WaitsToStart::default();
    let channel = ChannelBuilder::new(&env).intercept(waits.clone()).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let hang = CallOptions::new().metadata(md(&[("x-hang", "1")]));
    futures::executor::block_on(async {
        // Polled once (the hook runs and waits), then dropped.
        let mut call = channel.unary(&UNARY, &request("u", 1), hang.clone());
        assert!(futures::poll!(&mut call).is_pending());
        drop(call);
        // Dropped without being polled.
        drop(channel.client_streaming(&CLIENT_STREAM, hang.clone()));
        // Cancelled through the stream.
        let mut stream = channel.server_streaming(&SERVER_STREAM, &request("s", 1), hang.clone());
        assert!(futures::poll!(stream.next()).is_pending());
        stream.cancel();
        assert_eq!(stream.next().await.unwrap().unwrap_err().code(), Code::Cancelled);
        assert!(stream.next().await.is_none());
        // The sink dropped unclosed while the stream waits: the stream ends cancelled.
        let (sink, mut stream) = channel.duplex(&BIDI, hang);
        assert!(futures::poll!(stream.next()).is_pending());
        drop(sink);
        assert_eq!(stream.next().await.unwrap().unwrap_err().code(), Code::Cancelled);
    });
    let ends = waits.ends(4);
    assert!(ends.iter().all(|e| e.code() == Code::Cancelled), "{ends:?}");
    assert!(ends.iter().all(|e| e.messages_sent() == 0), "{ends:?}");
    assert_eq!(waits.finished.load(Ordering::SeqCst), 0);
    // A hook that panics (tokio's timer outside a tokio runtime) refuses with INTERNAL.
    let err = channel.unary(&UNARY, &request("no runtime", 1), CallOptions::new()).wait().unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err}");
    // A call that does start, on the same connection, is the first the server sees.
    tokio_runtime().block_on(async { channel.unary(&UNARY, &request("after", 1), CallOptions::new()).await }).unwrap();
    assert_eq!(server_side.starts.lock().unwrap().len(), 1);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn a_calls_deadline_counts_from_when_it_was_made_not_from_when_its_interceptor_finished() {
    let env = Environment::new(1);
    let server = start_echo_server(&env);
    let waits = WaitsToStart::default();
    let channel = ChannelBuilder::new(&env).intercept(waits.clone()).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let rt = tokio_runtime();
    let slow_start = CallOptions::new().metadata(md(&[("x-wait-ms", "300")])).timeout(Duration::from_millis(100));
    let (unary, duplex) = rt.block_on(async {
        let unary = channel.unary(&UNARY, &request("late", 1), slow_start.clone()).await.unwrap_err();
        let (_sink, mut stream) = channel.duplex(&BIDI, slow_start);
        (unary, stream.next().await.unwrap().unwrap_err())
    });
    assert_eq!(unary.code(), Code::DeadlineExceeded, "{unary}");
    assert_eq!(duplex.code(), Code::DeadlineExceeded, "{duplex}");
    let ends = waits.ends(2);
    assert!(ends.iter().all(|e| e.code() == Code::DeadlineExceeded), "{ends:?}");
}

/// Waits for a plain thread before it lets a call out (no runtime at all).
struct WaitsForAThread;

impl ClientInterceptor for WaitsForAThread {
    async fn on_start(&self, call: &mut ClientCallInfo) -> Result<(), Status> {
        let (tx, rx) = futures::channel::oneshot::channel();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            let _ = tx.send("thread");
        });
        let from = rx.await.map_err(|_| Status::internal("the thread went away"))?;
        call.metadata_mut().append("x-echo-intercepted", from).unwrap();
        Ok(())
    }
}

#[test]
fn blocking_calls_drive_a_waiting_client_interceptor() {
    let env = Environment::new(1);
    let server = start_echo_server(&env);
    let channel = ChannelBuilder::new(&env).intercept(WaitsForAThread).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let opts = || CallOptions::new().timeout(Duration::from_secs(20));
    let reply = channel.unary(&UNARY, &request("b", 1), opts()).wait().unwrap();
    assert_eq!(reply.initial_metadata().get("x-echo-intercepted"), Some("thread"));
    let (mut sink, response) = channel.client_streaming(&CLIENT_STREAM, opts());
    sink.send_blocking(request("c", 1)).unwrap();
    sink.close_blocking().unwrap();
    assert_eq!(response.response().wait().unwrap().initial_metadata().get("x-echo-intercepted"), Some("thread"));
    let items: Vec<_> = channel.server_streaming(&SERVER_STREAM, &request("s", 3), opts()).into_blocking_iter().collect();
    assert_eq!(items.len(), 3);
    assert!(items.into_iter().all(|i| i.is_ok()));
}

#[test]
fn a_deadline_policy_refusal_is_an_end_the_interceptors_see_without_a_start() {
    let env = Environment::new(1);
    let recorder = Recorder::default();
    let policy = grpcore::DeadlinePolicy::new().with_max_timeout(Duration::from_secs(2));
    let strict = UNARY.with_deadline_policy(policy);
    let service = ServiceBuilder::new(SERVICE).add_unary(&strict, unary_echo).build();
    let server = ServerBuilder::new(&env)
        .intercept(recorder.clone())
        .register_service(service)
        .bind("127.0.0.1:0")
        .build()
        .unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();

    // No deadline (the bare descriptor carries no default): refused before the chain.
    let err = channel.unary(&UNARY, &request("no deadline", 1), CallOptions::new()).wait().unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let ends = recorder.ends(1);
    assert_eq!((ends[0].code(), ends[0].method()), (Code::InvalidArgument, UNARY.path()));
    assert!(recorder.starts.lock().unwrap().is_empty(), "a start hook ran for a refused call");

    // A deadline beyond the maximum: admitted, through the chain.
    channel.unary(&UNARY, &request("far", 2), CallOptions::new().timeout(Duration::from_secs(60))).wait().unwrap();
    recorder.ends(2);
    let starts = recorder.starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 1);
    assert!(starts[0].2, "the start hook saw no deadline");
}
