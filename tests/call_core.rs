//! The call core's guarantees, each pinned by a test that failed before the core existed
//! (issue #12): calls keep their channel, a server call ends after the last write of a sink
//! that outlives its handler, an unclosed request sink cancels, a response stream reports a
//! decode failure once, and every client call knows its peer.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::*;
use futures::{SinkExt, StreamExt};
use grpcore::{
    BytesCodec, CallOptions, ChannelBuilder, Code, Environment, Error, Metadata, Method, RequestStream, ServerBuilder,
    ServerContext, ServerSink, ServiceBuilder, Status,
};

fn opts() -> CallOptions {
    CallOptions::new().timeout(Duration::from_secs(20))
}

/// Defect 2: a call holds its channel. Dropping the last `Channel` while a stream waits for
/// its connection used to fail the stream with `UNKNOWN: Channel Destroyed`.
#[test]
fn a_connecting_stream_outlives_its_dropped_channel() {
    let env = Environment::new(1);
    let server = start_echo_server(&env);
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let (mut sink, mut stream) = channel.duplex(&BIDI, opts().wait_for_ready(true));
    drop(channel);
    futures::executor::block_on(async {
        for i in 0..3 {
            sink.send(request("after", i)).await.expect("the stream keeps its channel");
            assert_eq!(stream.next().await.unwrap().unwrap().seq, i);
        }
        sink.close().await.unwrap();
        assert!(stream.next().await.is_none(), "ends with OK");
    });
}

/// Defect 2, once connected: the stream goes on after its channel is dropped mid-way.
#[test]
fn a_stream_outlives_its_dropped_channel() {
    let env = Environment::new(1);
    let server = start_echo_server(&env);
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let (mut sink, mut stream) = channel.duplex(&BIDI, opts());
    futures::executor::block_on(async {
        sink.send(request("before", 1)).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap().seq, 1);
        drop(channel);
        for i in 2..5 {
            sink.send(request("after", i)).await.unwrap();
            assert_eq!(stream.next().await.unwrap().unwrap().seq, i, "the stream goes on without its channel");
        }
        sink.close().await.unwrap();
        assert!(stream.next().await.is_none(), "ends with OK");
    });
}

/// Defect 2: a wait-for-ready call made on a channel that is dropped at once (before it
/// connected) used to wait for a connection that could never come, then fail.
#[test]
fn a_waiting_call_outlives_its_dropped_channel() {
    let env = Environment::new(1);
    let server = start_echo_server(&env);
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let call = channel.unary(&UNARY, &request("x", 7), CallOptions::new().wait_for_ready(true).timeout(Duration::from_secs(5)));
    drop(channel);
    let reply = call.wait().expect("the call keeps its channel");
    assert_eq!(reply.message().seq, 7);
}

/// A server-streaming service whose handler moves its sink into another thread and returns
/// at once; that thread writes `count` messages, `gap` apart, then drops the sink.
fn detached_sink_server(env: &Environment, count: i64, gap: Duration) -> grpcore::Server {
    let service = ServiceBuilder::new(SERVICE)
        .add_server_streaming(&SERVER_STREAM, move |req: EchoRequest, mut sink: ServerSink<EchoResponse>, _ctx| {
            std::thread::spawn(move || {
                futures::executor::block_on(async {
                    for i in 0..count {
                        std::thread::sleep(gap);
                        let reply = EchoResponse { message: req.message.clone(), seq: i, payload: vec![] };
                        if sink.send(reply).await.is_err() {
                            return;
                        }
                    }
                })
            });
            async { Ok::<(), Status>(()) }
        })
        .build();
    ServerBuilder::new(env).register_service(service).bind("127.0.0.1:0").build().unwrap()
}

/// Defect 3: the status goes out after the last write of a sink that outlived its handler.
/// It used to go out when the handler returned: OK with zero messages, and the moved
/// sink's first send failed.
#[test]
fn the_status_follows_the_last_write_of_a_moved_sink() {
    let env = Environment::new(2);
    let server = detached_sink_server(&env, 5, Duration::from_millis(20));
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let seqs: Vec<i64> = channel
        .server_streaming(&SERVER_STREAM, &request("moved", 0), opts())
        .into_blocking_iter()
        .map(|r| r.expect("no error").seq)
        .collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
}

/// Defect 3, the lost wake-up: the handler returns while its moved sink's write is in
/// flight, many times over with no gap between writes, so that the handler's end and the
/// sink's wait race on one call. Every call must end, with all its messages.
#[test]
fn no_wake_up_is_lost_when_a_handler_returns_during_a_write() {
    let env = Environment::new(2);
    let server = detached_sink_server(&env, 3, Duration::ZERO);
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    for round in 0..200 {
        let stream = channel.server_streaming(&SERVER_STREAM, &request("race", round), opts().timeout(Duration::from_secs(10)));
        let got: Vec<i64> = stream.into_blocking_iter().map(|r| r.unwrap_or_else(|e| panic!("round {round}: {e}")).seq).collect();
        assert_eq!(got, vec![0, 1, 2], "round {round}");
    }
}

/// A client-streaming service that reports, per call, how its request stream ended.
fn upload_server(env: &Environment) -> (grpcore::Server, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let service = ServiceBuilder::new(SERVICE)
        .add_client_streaming(&CLIENT_STREAM, move |mut requests: RequestStream<EchoRequest>, _ctx| {
            let tx = tx.lock().unwrap().clone();
            async move {
                let mut n = 0;
                let outcome = loop {
                    match requests.next().await {
                        Some(Ok(_)) => n += 1,
                        Some(Err(status)) => break format!("{n} then {:?}", status.code()),
                        None => break format!("{n} then end"),
                    }
                };
                let _ = tx.send(outcome);
                Ok::<_, Status>(EchoResponse { message: String::new(), seq: n, payload: vec![] })
            }
        })
        .build();
    (ServerBuilder::new(env).register_service(service).bind("127.0.0.1:0").build().unwrap(), rx)
}

/// Defect 4: dropping a request sink that was not closed cancels the call. It used to
/// half-close, so the server took a truncated upload for a complete one.
#[test]
fn dropping_an_unclosed_request_sink_cancels_the_upload() {
    let env = Environment::new(1);
    let (server, outcomes) = upload_server(&env);
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let (mut sink, response) = channel.client_streaming(&CLIENT_STREAM, opts());
    sink.send_blocking(request("part", 1)).unwrap();
    sink.send_blocking(request("part", 2)).unwrap();
    drop(sink); // an error path of the sender: the upload is incomplete
    let err = response.wait().expect_err("an incomplete upload must not succeed");
    assert_eq!(err.code(), Code::Cancelled, "{err}");
    // The server may read 0, 1 or 2 messages before the cancellation reaches it (a send
    // completes when the core took the message, not when the server read it); what matters
    // is that its stream ends cancelled, never as a complete upload.
    let outcome = outcomes.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(outcome.ends_with("then Cancelled"), "{outcome}");

    // An explicit close still half-closes.
    let (mut sink, response) = channel.client_streaming(&CLIENT_STREAM, opts());
    sink.send_blocking(request("part", 1)).unwrap();
    sink.close_blocking().unwrap();
    assert_eq!(response.wait().unwrap().seq, 1);
    assert_eq!(outcomes.recv_timeout(Duration::from_secs(10)).unwrap(), "1 then end");
}

/// Defect 5: early headers go through the same send side as messages and the status.
/// A handler whose sink (moved to another thread) sends headers after the handler returned
/// used to race the status batch; now the status waits, and the headers arrive first.
#[test]
fn early_headers_from_a_moved_sink_precede_the_status() {
    let env = Environment::new(2);
    let service = ServiceBuilder::new(SERVICE)
        .add_server_streaming(&SERVER_STREAM, |_req: EchoRequest, mut sink: ServerSink<EchoResponse>, ctx: ServerContext| {
            let mut md = Metadata::new();
            md.append("x-early", "yes").unwrap();
            ctx.set_initial_metadata(md);
            std::thread::spawn(move || {
                futures::executor::block_on(async {
                    std::thread::sleep(Duration::from_millis(30));
                    sink.send_headers().await.expect("headers go out");
                    std::thread::sleep(Duration::from_millis(30));
                    sink.send(EchoResponse { message: "after".into(), seq: 1, payload: vec![] }).await.expect("sent");
                })
            });
            async { Ok::<(), Status>(()) }
        })
        .build();
    let server = ServerBuilder::new(&env).register_service(service).bind("127.0.0.1:0").build().unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    for _ in 0..20 {
        let mut stream = channel.server_streaming(&SERVER_STREAM, &request("h", 0), opts());
        futures::executor::block_on(async {
            let md = stream.initial_metadata().await.unwrap().clone();
            assert_eq!(md.get("x-early"), Some("yes"));
            assert_eq!(stream.next().await.unwrap().unwrap().seq, 1);
            assert!(stream.next().await.is_none());
        });
    }
}

/// Defect 8: a response that cannot be decoded is one `Err`, then the stream ends. It used
/// to yield a second `Err` (the CANCELLED status of the cancellation it caused).
#[test]
fn a_response_stream_reports_a_decode_failure_once() {
    let env = Environment::new(1);
    const RAW: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::server_streaming("/grpcore.test.Echo/ServerStream");
    let service = ServiceBuilder::new(SERVICE)
        .add_server_streaming(&RAW, |_req: Vec<u8>, mut sink: ServerSink<Vec<u8>>, _ctx| async move {
            sink.send(vec![0xff, 0xff, 0xff]).await.map_err(|e| e.status())?;
            sink.send(vec![0xff, 0xff, 0xff]).await.map_err(|e| e.status())?;
            Ok(())
        })
        .build();
    let server = ServerBuilder::new(&env).register_service(service).bind("127.0.0.1:0").build().unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let items: Vec<Result<EchoResponse, Error>> =
        channel.server_streaming(&SERVER_STREAM, &request("x", 0), opts()).into_blocking_iter().collect();
    assert_eq!(items.len(), 1, "one error, then the end: {items:?}");
    assert!(matches!(items[0], Err(Error::Codec(_))), "{:?}", items[0]);
}

/// Every client call and response names its peer, as `ServerContext::peer` does.
#[test]
fn client_calls_and_responses_name_their_peer() {
    let env = Environment::new(1);
    let server = start_echo_server(&env);
    let port = server.port();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{port}")).unwrap();
    let expected = format!("127.0.0.1:{port}");

    let call = channel.unary(&UNARY, &request("p", 1), opts());
    let response = call.wait().unwrap();
    assert!(response.peer().contains(&expected), "{}", response.peer());
    assert_eq!(response.clone().peer(), response.peer(), "a clone keeps the peer");

    let mut stream = channel.server_streaming(&SERVER_STREAM, &request("p", 2), opts());
    futures::executor::block_on(async { stream.next().await.unwrap().unwrap() });
    assert!(stream.peer().contains(&expected), "{}", stream.peer());

    let (mut sink, response) = channel.client_streaming(&CLIENT_STREAM, opts());
    sink.send_blocking(request("p", 3)).unwrap();
    assert!(sink.peer().contains(&expected), "{}", sink.peer());
    sink.close_blocking().unwrap();
    assert!(response.peer().contains(&expected), "{}", response.peer());
    assert!(response.response().wait().unwrap().peer().contains(&expected));

    // A call that never connected has no peer yet, and says so with an empty string.
    let nowhere = ChannelBuilder::new(&env).connect("127.0.0.1:1").unwrap();
    let stream = nowhere.server_streaming(&SERVER_STREAM, &request("p", 4), opts());
    let _ = stream.peer();
}

/// A sink closed by the handler and the handler's return end the call once, whichever
/// comes first, on many calls at once (the state word's accounting under load).
#[test]
fn closed_and_dropped_sinks_end_every_call_once() {
    let env = Environment::new(2);
    let finished = Arc::new(AtomicUsize::new(0));
    let counter = finished.clone();
    let service = ServiceBuilder::new(SERVICE)
        .add_duplex(&BIDI, move |mut requests: RequestStream<EchoRequest>, mut sink: ServerSink<EchoResponse>, _ctx| {
            let counter = counter.clone();
            async move {
                while let Some(Ok(req)) = requests.next().await {
                    let seq = req.seq;
                    sink.send(EchoResponse { message: req.message, seq, payload: vec![] }).await.map_err(|e| e.status())?;
                    if seq % 2 == 0 {
                        sink.close().await.map_err(|e| e.status())?;
                        break;
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .build();
    let server = ServerBuilder::new(&env).register_service(service).bind("127.0.0.1:0").build().unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    futures::executor::block_on(async {
        let calls = (0..50).map(|i| {
            let channel = channel.clone();
            async move {
                let (mut sink, mut stream) = channel.duplex(&BIDI, opts());
                sink.send(request("c", i)).await.unwrap();
                let first = stream.next().await.unwrap().unwrap();
                assert_eq!(first.seq, i);
                sink.close().await.unwrap();
                assert!(stream.next().await.is_none(), "call {i} ends with OK");
            }
        });
        futures::future::join_all(calls).await;
    });
    assert!(Instant::now() < deadline);
    assert_eq!(finished.load(Ordering::SeqCst), 50);
}
