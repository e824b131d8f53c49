//! Streaming calls of all kinds, grpcore client against grpcore server, under every
//! executor: tokio (multi-thread and current-thread), `block_on`, and the CQ executor.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::{SinkExt, StreamExt};
use grpcore::{CallOptions, ChannelBuilder, Code, Environment, ServerBuilder, ServiceBuilder, Status};

fn setup() -> (Environment, grpcore::Server, grpcore::Channel) {
    let env = Environment::new(2);
    let server = start_echo_server(&env);
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    (env, server, channel)
}

#[test]
fn all_kinds_under_block_on() {
    let (_env, _server, channel) = setup();
    futures::executor::block_on(check_all_call_kinds(channel));
}

#[test]
fn all_kinds_under_tokio_multi_thread() {
    let (_env, _server, channel) = setup();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    rt.block_on(async move { tokio::spawn(check_all_call_kinds(channel)).await.unwrap() });
}

#[test]
fn all_kinds_under_tokio_current_thread() {
    let (_env, _server, channel) = setup();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(check_all_call_kinds(channel));
}

#[test]
fn all_kinds_on_the_cq_executor() {
    let (env, _server, channel) = setup();
    futures::executor::block_on(env.spawn(check_all_call_kinds(channel))).unwrap();
}

#[test]
fn blocking_equivalents_for_streams() {
    let (_env, _server, channel) = setup();
    let (mut sink, response) = channel.client_streaming(&CLIENT_STREAM, CallOptions::new());
    for i in 0..3 {
        sink.send_blocking(request("x", i)).unwrap();
    }
    sink.close_blocking().unwrap();
    assert_eq!(response.wait().unwrap().seq, 3);
    let seqs: Vec<i64> = channel
        .server_streaming(&SERVER_STREAM, &request("s", 4), CallOptions::new())
        .into_blocking_iter()
        .map(|r| r.unwrap().seq)
        .collect();
    assert_eq!(seqs, vec![0, 1, 2, 3]);
    let (mut sink, stream) = channel.duplex(&BIDI, CallOptions::new());
    for i in 0..3 {
        sink.send_blocking(request("d", i)).unwrap();
    }
    sink.close_blocking().unwrap(); // only an explicit close half-closes
    let seqs: Vec<i64> = stream.into_blocking_iter().map(|r| r.unwrap().seq).collect();
    assert_eq!(seqs, vec![0, 1, 2]);
}

#[test]
fn a_blocking_iterator_keeps_the_headers_and_the_trailers() {
    let (_env, _server, channel) = setup();
    let md = grpcore::Metadata::from_pairs([("x-echo-kind", "blocking")]).unwrap();
    let mut items = channel.server_streaming(&SERVER_STREAM, &request("s", 2), CallOptions::new().metadata(md)).into_blocking_iter();
    assert_eq!(items.initial_metadata().unwrap().get("x-echo-kind"), Some("blocking"));
    assert_eq!(items.trailing_metadata(), None, "no trailers before the end");
    assert_eq!(items.by_ref().map(|r| r.unwrap().seq).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(items.trailing_metadata().and_then(|t| t.get("x-trailer-kind")), Some("blocking"));
    assert!(items.next().is_none(), "still the end");
}

#[test]
fn dropping_a_response_stream_cancels_the_server_handler() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let env = Environment::new(1);
    let cancelled = Arc::new(AtomicBool::new(false));
    let flag = cancelled.clone();
    let service = ServiceBuilder::new(SERVICE)
        .add_server_streaming(&SERVER_STREAM, move |_req: EchoRequest, mut sink: grpcore::ServerSink<EchoResponse>, _ctx| {
            let flag = flag.clone();
            async move {
                // 16 KiB messages fill the flow-control window quickly once the client stops
                // reading, even under valgrind.
                for i in 0.. {
                    let msg = EchoResponse { seq: i, payload: vec![0; 16 * 1024], ..Default::default() };
                    if sink.send(msg).await.is_err() {
                        flag.store(true, Ordering::SeqCst);
                        return Err(Status::new(Code::Cancelled, "client went away"));
                    }
                }
                Ok(())
            }
        })
        .build();
    let server = ServerBuilder::new(&env).register_service(service).bind("127.0.0.1:0").build().unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let mut stream = channel.server_streaming(&SERVER_STREAM, &request("x", 0), CallOptions::new());
    futures::executor::block_on(async {
        for i in 0..10 {
            assert_eq!(stream.next().await.unwrap().unwrap().seq, i);
        }
    });
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cancelled.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the server never saw the cancellation");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn server_sees_client_cancellation_in_its_request_stream() {
    let env = Environment::new(1);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx = std::sync::Mutex::new(tx);
    let service = ServiceBuilder::new(SERVICE)
        .add_client_streaming(&CLIENT_STREAM, move |mut requests: grpcore::RequestStream<EchoRequest>, _ctx| {
            let tx = tx.lock().unwrap().clone();
            async move {
                loop {
                    match requests.next().await {
                        Some(Ok(_)) => continue,
                        Some(Err(status)) => {
                            let _ = tx.send(format!("{}", status.code()));
                            return Err(status);
                        }
                        None => {
                            let _ = tx.send("end".into());
                            return Ok(EchoResponse::default());
                        }
                    }
                }
            }
        })
        .build();
    let server = ServerBuilder::new(&env).register_service(service).bind("127.0.0.1:0").build().unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let (mut sink, response) = channel.client_streaming(&CLIENT_STREAM, CallOptions::new());
    futures::executor::block_on(sink.send(request("a", 1))).unwrap();
    drop(response); // cancels
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "CANCELLED");
    drop(sink);
}

#[test]
fn early_headers_arrive_before_any_message() {
    let env = Environment::new(1);
    let (go_tx, go_rx) = futures::channel::oneshot::channel::<()>();
    let go_rx = std::sync::Mutex::new(Some(go_rx));
    let service = ServiceBuilder::new(SERVICE)
        .add_server_streaming(&SERVER_STREAM, move |_req: EchoRequest, mut sink: grpcore::ServerSink<EchoResponse>, ctx: grpcore::ServerContext| {
            let go = go_rx.lock().unwrap().take().unwrap();
            async move {
                let mut md = grpcore::Metadata::new();
                md.append("x-early", "yes").unwrap();
                ctx.set_initial_metadata(md);
                sink.send_headers().await.map_err(Status::from)?;
                let _ = go.await;
                sink.send(EchoResponse { seq: 1, ..Default::default() }).await.map_err(Status::from)?;
                Ok(())
            }
        })
        .build();
    let server = ServerBuilder::new(&env).register_service(service).bind("127.0.0.1:0").build().unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let mut stream = channel.server_streaming(&SERVER_STREAM, &request("x", 0), CallOptions::new());
    futures::executor::block_on(async {
        assert_eq!(stream.initial_metadata().await.unwrap().get("x-early"), Some("yes"));
        go_tx.send(()).unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap().seq, 1);
        assert!(stream.next().await.is_none());
    });
}

#[test]
fn write_flags_and_sink_trait_work_together() {
    let (_env, _server, channel) = setup();
    let (mut sink, stream) = channel.duplex(&BIDI, CallOptions::new());
    futures::executor::block_on(async {
        sink.set_write_flags(grpcore::WriteFlags::new().buffer_hint(true));
        let burst = futures::stream::iter((0..50).map(|i| Ok(request("burst", i))));
        sink.send_all(&mut burst.map(|r| r)).await.unwrap();
        sink.send_with(request("flush", 50), grpcore::WriteFlags::new()).await.unwrap();
        SinkExt::close(&mut sink).await.unwrap();
        let seqs: Vec<i64> = stream.map(|r| r.unwrap().seq).collect().await;
        assert_eq!(seqs, (0..=50).collect::<Vec<_>>());
    });
}

#[test]
fn explicit_cancel_ends_each_half_with_cancelled() {
    let (_env, _server, channel) = setup();
    futures::executor::block_on(async {
        let (mut sink, response) = channel.client_streaming(&CLIENT_STREAM, CallOptions::new());
        sink.send(request("a", 1)).await.unwrap();
        response.cancel();
        // The sending half ends too: a send after the cancel fails (the response carries
        // the status, CANCELLED).
        sink.send(request("b", 2)).await.expect_err("a send after cancel must fail");
        assert_eq!(response.await.unwrap_err().code(), Code::Cancelled);
        let mut stream = channel.server_streaming(&SERVER_STREAM, &request("s", 1000), CallOptions::new());
        assert_eq!(stream.next().await.unwrap().unwrap().seq, 0);
        stream.cancel();
        let end = loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                other => break other,
            }
        };
        assert_eq!(end.unwrap().unwrap_err().code(), Code::Cancelled);
        let (sink, mut stream) = channel.duplex(&BIDI, CallOptions::new());
        sink.cancel();
        assert_eq!(stream.next().await.unwrap().unwrap_err().code(), Code::Cancelled);
        // Cancelling the receiving half of a duplex call ends its sending half.
        let (mut sink, stream) = channel.duplex(&BIDI, CallOptions::new());
        sink.send(request("d", 1)).await.unwrap();
        stream.cancel();
        sink.send(request("d", 2)).await.expect_err("a send after cancel must fail");
    });
}
