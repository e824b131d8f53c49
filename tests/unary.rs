//! Unary calls between a grpcore client and a grpcore server, in one process.

mod common;

use std::time::{Duration, Instant};

use common::*;
use grpcore::{CallOptions, ChannelBuilder, Code, Environment, Error, Metadata};

fn setup() -> (Environment, grpcore::Server, grpcore::Channel) {
    let env = Environment::new(2);
    let server = start_echo_server(&env);
    let channel = ChannelBuilder::new(&env)
        .connect(&format!("127.0.0.1:{}", server.port()))
        .unwrap();
    (env, server, channel)
}

#[test]
fn unary_round_trip_blocking() {
    let (_env, _server, channel) = setup();
    let reply = channel.unary(&UNARY, &request("hello", 7), CallOptions::new()).wait().unwrap();
    assert_eq!(reply.message().message, "hello");
    assert_eq!(reply.message().seq, 7);
}

#[test]
fn metadata_round_trips_ascii_and_binary() {
    let (_env, _server, channel) = setup();
    let mut md = Metadata::new();
    md.append("x-echo-ascii", "hello").unwrap();
    md.append_bin("x-echo-data-bin", vec![0u8, 1, 0xfe, 0xff]).unwrap();
    let reply = channel
        .unary(&UNARY, &request("md", 1), CallOptions::new().metadata(md))
        .wait()
        .unwrap();
    assert_eq!(reply.initial_metadata().get("x-echo-ascii"), Some("hello"));
    assert_eq!(reply.initial_metadata().get_bin("x-echo-data-bin"), Some(&[0u8, 1, 0xfe, 0xff][..]));
    assert_eq!(reply.trailing_metadata().get("x-trailer-ascii"), Some("hello"));
    assert_eq!(reply.trailing_metadata().get_bin("x-trailer-data-bin"), Some(&[0u8, 1, 0xfe, 0xff][..]));
}

#[test]
fn status_with_details_and_trailers_reaches_client() {
    let (_env, _server, channel) = setup();
    let mut req = request("fail", 1);
    req.fail_code = Code::FailedPrecondition.as_i32();
    req.fail_message = "precondition: é ünïcode".into();
    req.fail_details = b"\x08\x09detail\x00\xff".to_vec();
    let mut md = Metadata::new();
    md.append("x-echo-why", "because").unwrap();
    let err = channel.unary(&UNARY, &req, CallOptions::new().metadata(md)).wait().unwrap_err();
    let Error::Rpc(status) = err else { panic!("expected an RPC status, got {err}") };
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "precondition: é ünïcode");
    assert_eq!(status.details(), b"\x08\x09detail\x00\xff");
    assert_eq!(status.metadata().get("x-trailer-why"), Some("because"));
}

#[test]
fn deadline_exceeded_against_slow_handler() {
    let (_env, _server, channel) = setup();
    // The handler would answer after 20 s; the 200 ms deadline must end the call long before.
    // The bound leaves room for valgrind (the leak check runs this) on a loaded machine and
    // still fails if the deadline is not applied (the call would then succeed after 20 s).
    let mut req = request("slow", 1);
    req.sleep_ms = 20_000;
    let start = Instant::now();
    let err = channel
        .unary(&UNARY, &req, CallOptions::new().timeout(Duration::from_millis(200)))
        .wait()
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
}

#[test]
fn a_deadline_already_passed_fails_every_kind_at_once() {
    let (_env, server, channel) = setup();
    let past = || CallOptions::new().deadline(Instant::now() - Duration::from_millis(1));
    let zero = || CallOptions::new().timeout(Duration::ZERO);
    for _ in 0..20 {
        let err = channel.unary(&UNARY, &request("late", 1), past()).wait().unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
        let err = channel.unary(&UNARY, &request("late", 1), zero()).wait().unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    }
    let (_sink, response) = channel.client_streaming(&CLIENT_STREAM, past());
    assert_eq!(response.wait().unwrap_err().code(), Code::DeadlineExceeded);
    let mut items = channel.server_streaming(&SERVER_STREAM, &request("late", 2), past()).into_blocking_iter();
    assert_eq!(items.next().unwrap().unwrap_err().code(), Code::DeadlineExceeded);
    assert!(items.next().is_none());
    let (_sink, stream) = channel.duplex(&BIDI, zero());
    assert_eq!(stream.into_blocking_iter().next().unwrap().unwrap_err().code(), Code::DeadlineExceeded);
    // The channel is still fine, and a call with time left passes.
    channel.unary(&UNARY, &request("in time", 1), CallOptions::new().timeout(Duration::from_secs(20))).wait().unwrap();
    drop(server);
}

#[test]
fn unknown_method_is_unimplemented() {
    let (_env, _server, channel) = setup();
    let missing: grpcore::Method<Vec<u8>, Vec<u8>, grpcore::BytesCodec> = grpcore::Method::unary("/grpcore.test.Echo/Nope");
    let err = channel.unary(&missing, &vec![1, 2, 3], CallOptions::new()).wait().unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err}");
    let other: grpcore::Method<Vec<u8>, Vec<u8>, grpcore::BytesCodec> = grpcore::Method::unary("/no.Such/Service");
    let err = channel.unary(&other, &vec![], CallOptions::new()).wait().unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err}");
}

#[test]
fn handler_panic_is_internal_and_server_keeps_serving() {
    let (_env, _server, channel) = setup();
    let err = channel.unary(&UNARY, &request("panic", 1), CallOptions::new()).wait().unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err}");
    assert!(err.to_string().contains("panicked"), "{err}");
    for i in 0..3 {
        let reply = channel.unary(&UNARY, &request("after", i), CallOptions::new()).wait().unwrap();
        assert_eq!(reply.message().seq, i);
    }
}

#[test]
fn thousand_concurrent_calls_on_one_channel() {
    let (_env, _server, channel) = setup();
    let calls: Vec<_> = (0..1000)
        .map(|i| {
            let mut req = request("many", i);
            req.payload = i.to_le_bytes().to_vec();
            channel.unary(&UNARY, &req, CallOptions::new().timeout(Duration::from_secs(60)))
        })
        .collect();
    let replies = futures::executor::block_on(futures::future::join_all(calls));
    for (i, r) in replies.into_iter().enumerate() {
        let r = r.unwrap().into_message();
        assert_eq!(r.seq, i as i64);
        assert_eq!(r.payload, (i as i64).to_le_bytes());
    }
}

#[test]
fn futures_complete_under_tokio_multi_and_current_thread() {
    let (_env, _server, channel) = setup();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let ch = channel.clone();
    let seqs = rt.block_on(async move {
        let mut handles = Vec::new();
        for i in 0..20 {
            let ch = ch.clone();
            handles.push(tokio::spawn(async move { ch.unary(&UNARY, &request("tokio", i), CallOptions::new()).await }));
        }
        let mut seqs = Vec::new();
        for h in handles {
            seqs.push(h.await.unwrap().unwrap().into_message().seq);
        }
        seqs
    });
    assert_eq!(seqs, (0..20).collect::<Vec<_>>());
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let reply = rt.block_on(channel.unary(&UNARY, &request("current", 3), CallOptions::new())).unwrap();
    assert_eq!(reply.message().seq, 3);
}

#[test]
fn client_calls_run_inside_cq_tasks() {
    let (env, _server, channel) = setup();
    let seq = futures::executor::block_on(env.spawn(async move {
        channel
            .unary(&UNARY, &request("inside", 11), CallOptions::new())
            .await
            .map(|r| r.into_message().seq)
    }))
    .unwrap()
    .unwrap();
    assert_eq!(seq, 11);
}

#[test]
fn blocking_call_on_cq_thread_is_refused_not_deadlocked() {
    let (env, _server, channel) = setup();
    let err = futures::executor::block_on(env.spawn(async move {
        channel.unary(&UNARY, &request("x", 1), CallOptions::new()).wait().unwrap_err()
    }))
    .unwrap();
    assert!(err.to_string().contains("completion-queue thread"), "{err}");
}

#[test]
fn dropping_the_client_future_cancels_the_server_handler() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let env = Environment::new(2);
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let started_tx = std::sync::Mutex::new(started_tx);
    let flag = saw_cancel.clone();
    let service = grpcore::ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, move |req: EchoRequest, ctx: grpcore::ServerContext| {
            let flag = flag.clone();
            let _ = started_tx.lock().unwrap().send(());
            async move {
                ctx.cancelled().await;
                flag.store(true, Ordering::SeqCst);
                Ok(EchoResponse { message: req.message, ..Default::default() })
            }
        })
        .build();
    let server = grpcore::ServerBuilder::new(&env).register_service(service).bind("127.0.0.1:0").build().unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let call = channel.unary(&UNARY, &request("wait", 1), CallOptions::new());
    started_rx.recv_timeout(Duration::from_secs(10)).expect("handler started");
    drop(call);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !saw_cancel.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the handler never saw the cancellation");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn handler_context_sees_peer_deadline_and_method() {
    use std::sync::{Arc, Mutex};
    let env = Environment::new(1);
    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let service = grpcore::ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, move |req: EchoRequest, ctx: grpcore::ServerContext| {
            *record.lock().unwrap() = Some((ctx.peer(), ctx.time_remaining(), ctx.method().to_string()));
            async move { Ok(EchoResponse { message: req.message, ..Default::default() }) }
        })
        .build();
    let server = grpcore::ServerBuilder::new(&env).register_service(service).bind("127.0.0.1:0").build().unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    channel
        .unary(&UNARY, &request("ctx", 1), CallOptions::new().timeout(Duration::from_secs(30)))
        .wait()
        .unwrap();
    let (peer, remaining, method) = seen.lock().unwrap().clone().unwrap();
    assert!(peer.starts_with("ipv4:127.0.0.1:"), "{peer}");
    let remaining = remaining.expect("the client's deadline reaches the server");
    // The wire format (grpc-timeout) rounds up, so allow a little over 30 s.
    assert!(remaining > Duration::from_secs(25) && remaining <= Duration::from_secs(31), "{remaining:?}");
    assert_eq!(method, "/grpcore.test.Echo/Unary");
    // Without a client deadline the handler sees none.
    channel.unary(&UNARY, &request("ctx", 2), CallOptions::new()).wait().unwrap();
    assert_eq!(seen.lock().unwrap().clone().unwrap().1, None);
}

#[test]
fn wait_for_ready_waits_for_a_server_that_starts_later() {
    let env = Environment::new(1);
    // An address nothing listens on yet (a unix socket: a released TCP port could be taken
    // by another process before the server binds it again).
    let address = fresh_unix_address("wait-for-ready");
    let channel = ChannelBuilder::new(&env).connect(&address).unwrap();
    // Fail-fast: nothing listens, so the call fails at once with UNAVAILABLE.
    let err = channel
        .unary(&UNARY, &request("fast", 1), CallOptions::new().timeout(Duration::from_secs(5)))
        .wait()
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    // Wait-for-ready: the call waits until a server appears on the port.
    let call = channel.unary(
        &UNARY,
        &request("patient", 2),
        CallOptions::new().timeout(Duration::from_secs(30)).wait_for_ready(true),
    );
    std::thread::sleep(Duration::from_millis(300));
    let _server = grpcore::ServerBuilder::new(&env)
        .register_service(echo_service())
        .bind(address)
        .build()
        .unwrap();
    assert_eq!(call.wait().unwrap().message().seq, 2);
}

/// Unary calls made one after another on one thread reuse the finished batch of the
/// previous call (and its metadata arrays): nothing of an earlier call may show through in a
/// later one, whatever its size, metadata or status.
#[test]
fn consecutive_calls_on_one_thread_keep_their_results_apart() {
    let (env, _server, channel) = setup();
    let check = |channel: &grpcore::Channel| {
        for round in 0..3 {
            let mut md = Metadata::new();
            md.append("x-echo-a", "1").unwrap();
            md.append("x-echo-b", "2").unwrap();
            let reply = channel.unary(&UNARY, &request("md", round), CallOptions::new().metadata(md)).wait().unwrap();
            assert_eq!(reply.initial_metadata().get("x-echo-b"), Some("2"));
            assert_eq!(reply.trailing_metadata().get("x-trailer-a"), Some("1"));

            let reply = channel.unary(&UNARY, &request("plain", round), CallOptions::new()).wait().unwrap();
            assert_eq!(reply.message().seq, round);
            assert!(reply.initial_metadata().get("x-echo-a").is_none(), "{:?}", reply.initial_metadata());
            assert!(reply.trailing_metadata().get("x-trailer-a").is_none(), "{:?}", reply.trailing_metadata());

            let mut failing = request("fail", round);
            failing.fail_code = Code::Aborted.as_i32();
            failing.fail_message = "no".into();
            failing.fail_details = b"why".to_vec();
            let err = channel.unary(&UNARY, &failing, CallOptions::new()).wait().unwrap_err();
            let Error::Rpc(status) = err else { panic!("expected an RPC status, got {err}") };
            assert_eq!((status.code(), status.message(), status.details()), (Code::Aborted, "no", &b"why"[..]));

            // Around and well above the size up to which requests are copied into a slice.
            for len in [0, 1, 8 << 10, (8 << 10) + 1, 300 << 10] {
                let mut req = request("big", round);
                req.payload = (0..len).map(|i| i as u8).collect();
                let reply = channel.unary(&UNARY, &req, CallOptions::new()).wait().unwrap();
                assert_eq!(reply.message().payload, req.payload, "payload of {len} bytes");
                assert!(reply.trailing_metadata().get_bin("grpc-status-details-bin").is_none());
            }
        }
    };
    check(&channel);
    // The same on a completion-queue thread, where spawned tasks finish their calls.
    let c = channel.clone();
    futures::executor::block_on(env.spawn(async move { check_async(&c).await })).unwrap();
}

async fn check_async(channel: &grpcore::Channel) {
    for round in 0..3 {
        let mut md = Metadata::new();
        md.append("x-echo-a", "1").unwrap();
        let reply = channel.unary(&UNARY, &request("md", round), CallOptions::new().metadata(md)).await.unwrap();
        assert_eq!(reply.initial_metadata().get("x-echo-a"), Some("1"));
        let reply = channel.unary(&UNARY, &request("plain", round), CallOptions::new()).await.unwrap();
        assert!(reply.initial_metadata().is_empty(), "{:?}", reply.initial_metadata());
        assert!(reply.trailing_metadata().is_empty(), "{:?}", reply.trailing_metadata());
    }
}

/// A handler may keep its context after its call ended, while later calls arrive on the same
/// queue thread: the server reuses the memory of finished calls (and of their tasks) only
/// once nothing references them, so each kept context still sees its own call.
#[test]
fn contexts_kept_after_the_call_see_their_own_call() {
    use std::sync::{Arc, Mutex};
    let env = Environment::new(1);
    let kept: Arc<Mutex<Vec<grpcore::ServerContext>>> = Arc::default();
    let keep = kept.clone();
    let service = grpcore::ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, move |req: EchoRequest, ctx: grpcore::ServerContext| {
            // Every other call keeps its context; the others end and leave their memory.
            if req.seq % 2 == 0 {
                keep.lock().unwrap().push(ctx);
            }
            async move { Ok(EchoResponse { message: req.message, seq: req.seq, ..Default::default() }) }
        })
        .build();
    let server = grpcore::ServerBuilder::new(&env).register_service(service).bind("127.0.0.1:0").build().unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    for seq in 0..40 {
        let mut md = Metadata::new();
        md.append("x-seq", &seq.to_string()).unwrap();
        let reply = channel.unary(&UNARY, &request("kept", seq), CallOptions::new().metadata(md)).wait().unwrap();
        assert_eq!(reply.message().seq, seq);
    }
    let kept = kept.lock().unwrap();
    assert_eq!(kept.len(), 20);
    for (i, ctx) in kept.iter().enumerate() {
        assert_eq!(ctx.request_metadata().get("x-seq"), Some((2 * i).to_string().as_str()), "context {i}");
        assert_eq!(ctx.method(), UNARY.path());
    }
}
