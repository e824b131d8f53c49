//! The joint send-and-receive API of bidirectional streams (`ServerSink::send_and_receive`,
//! `RequestSink::send_and_receive`: a message out and the next one in, one batch of the
//! core): against grpcio and grpc-js peers, mixed with plain `send`/`next`, and with every
//! way a call can end while a joint batch is pending (half-close, cancellation, deadline,
//! an error status, an undecodable or oversized message), and a joint batch abandoned
//! halfway whose two halves are then awaited by two different tasks.

mod common;

use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use grpcore::{
    BytesCodec, CallOptions, ChannelBuilder, Code, Environment, Method, RequestStream, ServerBuilder, ServerContext,
    ServerSink, ServiceBuilder, Status,
};

fn channel_to(env: &Environment, port: u16) -> grpcore::Channel {
    ChannelBuilder::new(env).connect(&format!("127.0.0.1:{port}")).unwrap()
}

fn opts() -> CallOptions {
    CallOptions::new().timeout(Duration::from_secs(20)).wait_for_ready(true)
}

fn echo(message: &str, seq: i64) -> EchoResponse {
    EchoResponse {
        message: message.into(),
        seq,
        payload: Vec::new(),
    }
}

/// A server with one duplex handler `f` on the Echo service's `Bidi` path.
fn server_with<F, Fut>(env: &Environment, f: F) -> grpcore::Server
where
    F: Fn(RequestStream<EchoRequest>, ServerSink<EchoResponse>, ServerContext) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), Status>> + Send + 'static,
{
    let service = ServiceBuilder::new(SERVICE).add_duplex(&BIDI, f).build();
    ServerBuilder::new(env).register_service(service).bind("127.0.0.1:0").build().unwrap()
}

#[test]
fn grpcio_and_grpc_js_clients_against_a_joint_server() {
    let env = Environment::new(2);
    let server = ServerBuilder::new(&env)
        .register_service(joint_echo_service())
        .bind("127.0.0.1:0")
        .build()
        .unwrap();
    let target = format!("127.0.0.1:{}", server.port());
    // All requests at once, then one at a time (each sent after the previous echo), then
    // a failure status mid-stream, with the echoed metadata and trailers.
    let (ok, output) = python_client(&target, &["bidi"]);
    assert!(ok && output.contains("1 passed, 0 failed"), "grpcio:\n{output}");
    let (ok, output) = node_client_with(&[], &target, &["bidi"]);
    assert!(ok && output.contains("1 passed, 0 failed"), "grpc-js:\n{output}");
}

#[test]
fn a_joint_client_against_grpcio_and_grpc_js_servers() {
    for peer in [python_server(&[]), node_server(&[])] {
        let env = Environment::new(1);
        let channel = channel_to(&env, peer.port);
        futures::executor::block_on(async {
            let (mut sink, mut stream) = channel.duplex(&BIDI, opts());
            for i in 0..20 {
                let mut req = request(&format!("j{i}"), i);
                req.payload = vec![i as u8; i as usize * 100];
                if i % 3 == 2 {
                    // Every third one the plain way, in between.
                    sink.send(req.clone()).await.unwrap();
                    let r = stream.message().await.unwrap().unwrap();
                    assert_eq!((r.message, r.seq, r.payload), (req.message, i, req.payload));
                } else {
                    let r = sink.send_and_receive(req.clone(), &mut stream).await.unwrap().unwrap();
                    assert_eq!((r.message, r.seq, r.payload), (req.message, i, req.payload));
                }
            }
            sink.close().await.unwrap();
            assert!(stream.message().await.unwrap().is_none(), "the call ends OK after the half-close");

            // The peer fails the call instead of answering: the joint call gives its status.
            let (mut sink, mut stream) = channel.duplex(&BIDI, opts());
            assert_eq!(sink.send_and_receive(request("a", 1), &mut stream).await.unwrap().unwrap().seq, 1);
            let mut bad = request("bad", 2);
            bad.fail_code = Code::DataLoss.as_i32();
            bad.fail_message = "mid-stream".into();
            let err = sink.send_and_receive(bad, &mut stream).await.unwrap_err();
            assert_eq!((err.code(), err.status().message()), (Code::DataLoss, "mid-stream"), "{err}");

            // The deadline passes while the joint batch waits for the answer.
            let (mut sink, mut stream) = channel.duplex(&BIDI, CallOptions::new().timeout(Duration::from_millis(500)));
            let mut slow = request("slow", 1);
            slow.sleep_ms = 10_000;
            let start = Instant::now();
            let err = sink.send_and_receive(slow, &mut stream).await.unwrap_err();
            assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
            assert!(start.elapsed() < Duration::from_secs(6), "took {:?}", start.elapsed());
        });
    }
}

#[test]
fn joint_and_plain_calls_interleave_on_both_sides() {
    let env = Environment::new(2);
    // For request `seq`, `seq` extra responses the plain way, then the echo joined with the
    // receive of the next request.
    let server = server_with(&env, |mut requests, mut sink, _ctx| async move {
        let mut next = requests.message().await?;
        while let Some(req) = next {
            for k in 0..req.seq {
                sink.send(echo("extra", k)).await?;
            }
            next = sink.send_and_receive(echo(&req.message, req.seq), &mut requests).await?;
        }
        Ok(())
    });
    let channel = channel_to(&env, server.port());
    futures::executor::block_on(async {
        let (mut sink, mut stream) = channel.duplex(&BIDI, opts());
        for i in 0..8 {
            let mut got = Vec::new();
            if i % 2 == 0 {
                got.push(sink.send_and_receive(request("m", i), &mut stream).await.unwrap().unwrap());
            } else {
                sink.send(request("m", i)).await.unwrap();
                got.push(stream.message().await.unwrap().unwrap());
            }
            for _ in 0..i {
                got.push(stream.message().await.unwrap().unwrap());
            }
            let mut want: Vec<_> = (0..i).map(|k| echo("extra", k)).collect();
            want.push(echo("m", i));
            assert_eq!(got, want, "request {i}");
        }
        sink.close().await.unwrap();
        assert!(stream.message().await.unwrap().is_none());
    });
}

#[test]
fn the_client_half_closes_while_the_server_waits_in_a_joint_batch() {
    let env = Environment::new(2);
    let server = server_with(&env, |mut requests, mut sink, ctx| async move {
        let mut next = requests.message().await?;
        while let Some(req) = next {
            next = sink.send_and_receive(echo(&req.message, req.seq), &mut requests).await?;
        }
        // The half-close ended the joint batch: the sink still sends.
        sink.send(echo("bye", 0)).await?;
        let mut trailers = grpcore::Metadata::new();
        trailers.append("x-end", "half-closed").unwrap();
        ctx.set_trailing_metadata(trailers);
        Ok(())
    });
    let channel = channel_to(&env, server.port());
    futures::executor::block_on(async {
        let (mut sink, mut stream) = channel.duplex(&BIDI, opts());
        assert_eq!(sink.send_and_receive(request("a", 1), &mut stream).await.unwrap(), Some(echo("a", 1)));
        sink.send(request("b", 2)).await.unwrap();
        sink.close().await.unwrap();
        assert_eq!(stream.message().await.unwrap(), Some(echo("b", 2)));
        assert_eq!(stream.message().await.unwrap(), Some(echo("bye", 0)));
        assert_eq!(stream.message().await.unwrap(), None);
        assert_eq!(stream.trailing_metadata().and_then(|t| t.get("x-end")), Some("half-closed"));
    });
}

#[test]
fn the_server_ends_the_call_while_the_client_waits_in_a_joint_batch() {
    let env = Environment::new(2);
    let server = server_with(&env, |mut requests, mut sink, _ctx| async move {
        while let Some(req) = requests.message().await? {
            match req.message.as_str() {
                "stop" => return Ok(()),
                "fail" => return Err(Status::new(Code::Aborted, "refused")),
                _ => sink.send(echo(&req.message, req.seq)).await?,
            }
        }
        Ok(())
    });
    let channel = channel_to(&env, server.port());
    futures::executor::block_on(async {
        let (mut sink, mut stream) = channel.duplex(&BIDI, opts());
        assert_eq!(sink.send_and_receive(request("a", 1), &mut stream).await.unwrap(), Some(echo("a", 1)));
        // The server returns OK without an answer: no next response, the call ended OK.
        assert_eq!(sink.send_and_receive(request("stop", 2), &mut stream).await.unwrap(), None);
        assert_eq!(stream.message().await.unwrap(), None);

        let (mut sink, mut stream) = channel.duplex(&BIDI, opts());
        let err = sink.send_and_receive(request("fail", 1), &mut stream).await.unwrap_err();
        assert_eq!((err.code(), err.status().message()), (Code::Aborted, "refused"), "{err}");
    });
}

#[test]
fn cancellation_and_deadline_end_a_pending_server_joint_batch() {
    let env = Environment::new(2);
    let (tx, rx) = mpsc::channel::<Result<Option<EchoRequest>, Code>>();
    let tx = Mutex::new(tx);
    let server = server_with(&env, move |mut requests, mut sink, _ctx| {
        let tx = tx.lock().unwrap().clone();
        async move {
            let first = requests.message().await?.unwrap_or_default();
            // Pending until the client's next message, half-close or end.
            let next = sink.send_and_receive(echo(&first.message, first.seq), &mut requests).await;
            let _ = tx.send(next.clone().map_err(|s| s.code()));
            next.map(|_| ())
        }
    });
    let channel = channel_to(&env, server.port());
    futures::executor::block_on(async {
        // The client cancels.
        let (mut sink, mut stream) = channel.duplex(&BIDI, opts());
        assert_eq!(sink.send_and_receive(request("a", 1), &mut stream).await.unwrap(), Some(echo("a", 1)));
        stream.cancel();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), Err(Code::Cancelled));
        drop((sink, stream));

        // The deadline passes.
        let start = Instant::now();
        let (mut sink, mut stream) = channel.duplex(&BIDI, CallOptions::new().timeout(Duration::from_millis(500)));
        assert_eq!(sink.send_and_receive(request("b", 2), &mut stream).await.unwrap(), Some(echo("b", 2)));
        let err = stream.message().await.unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
        assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap().is_err(), "the server's joint batch ends too");
        assert!(start.elapsed() < Duration::from_secs(6), "took {:?}", start.elapsed());
    });
}

#[test]
fn a_bad_request_ends_a_pending_server_joint_batch() {
    let env = Environment::new(2);
    let (tx, rx) = mpsc::channel::<Code>();
    let tx = Mutex::new(tx);
    let service = ServiceBuilder::new(SERVICE)
        .add_duplex(&BIDI, move |mut requests: RequestStream<EchoRequest>, mut sink: ServerSink<EchoResponse>, _ctx| {
            let tx = tx.lock().unwrap().clone();
            async move {
                let mut next = requests.message().await?;
                while let Some(req) = next {
                    match sink.send_and_receive(echo(&req.message, req.seq), &mut requests).await {
                        Ok(n) => next = n,
                        Err(status) => {
                            let _ = tx.send(status.code());
                            return Err(status);
                        }
                    }
                }
                Ok(())
            }
        })
        .build();
    let server = ServerBuilder::new(&env)
        .register_service(service)
        .max_receive_message_len(1024)
        .bind("127.0.0.1:0")
        .build()
        .unwrap();
    let channel = channel_to(&env, server.port());
    // The same path, raw bytes: a first request that decodes, then one that does not.
    const RAW: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::duplex("/grpcore.test.Echo/Bidi");
    futures::executor::block_on(async {
        let (mut sink, mut stream) = channel.duplex(&RAW, opts());
        let first = sink.send_and_receive(vec![0x10, 0x07], &mut stream).await.unwrap().unwrap();
        assert_eq!(first, vec![0x10, 0x07], "the echo of seq 7");
        let err = sink.send_and_receive(vec![0xff, 0xff, 0xff], &mut stream).await.unwrap_err();
        let server_code = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_ne!(server_code, Code::Ok);
        assert_eq!(err.code(), server_code, "the client gets the status of the failed receive: {err}");

        // Over the server's receive limit.
        let (mut sink, mut stream) = channel.duplex(&BIDI, opts());
        assert_eq!(sink.send_and_receive(request("a", 1), &mut stream).await.unwrap(), Some(echo("a", 1)));
        let mut big = request("big", 2);
        big.payload = vec![1; 4096];
        let err = sink.send_and_receive(big, &mut stream).await.unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
        // The core's size filter cancels the call: the server's receive ends with CANCELLED.
        assert_ne!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), Code::Ok);
    });
}

#[test]
fn an_abandoned_joint_batch_serves_both_halves_in_two_tasks() {
    let env = Environment::new(2);
    let (tx, rx) = mpsc::channel::<String>();
    let tx = Mutex::new(tx);
    let server = server_with(&env, move |mut requests, mut sink, _ctx| {
        let tx = tx.lock().unwrap().clone();
        async move {
            let first = requests.message().await?.unwrap_or_default();
            {
                // Given up after 100 ms: the echo went out, the receive stays in flight.
                let joint = sink.send_and_receive(echo(&first.message, first.seq), &mut requests);
                let timer = grpcore::timer::sleep(Duration::from_millis(100));
                futures::pin_mut!(joint);
                if let futures::future::Either::Left(..) = futures::future::select(joint, timer).await {
                    let _ = tx.send("the joint call finished before the client's next message".into());
                }
            }
            // The sending half, waited for in another thread, and the receiving half here:
            // both wake when the joint batch ends.
            // (Handed back through a channel: joining the thread would block this queue
            // thread, which delivers the thread's send.)
            let (back, sender) = futures::channel::oneshot::channel();
            std::thread::spawn(move || {
                let sent = futures::executor::block_on(sink.send(echo("extra", 0)));
                let _ = back.send((sink, sent));
            });
            let next = requests.message().await?;
            let (mut sink, sent) = sender.await.map_err(|_| Status::internal("the sender thread died"))?;
            sent?;
            let next = next.unwrap_or_default();
            sink.send(echo(&next.message, next.seq)).await?;
            let _ = tx.send("done".into());
            Ok(())
        }
    });
    let channel = channel_to(&env, server.port());
    futures::executor::block_on(async {
        let (mut sink, mut stream) = channel.duplex(&BIDI, opts());
        assert_eq!(sink.send_and_receive(request("a", 1), &mut stream).await.unwrap(), Some(echo("a", 1)));
        std::thread::sleep(Duration::from_millis(500));
        sink.send(request("b", 2)).await.unwrap();
        assert_eq!(stream.message().await.unwrap(), Some(echo("extra", 0)));
        assert_eq!(stream.message().await.unwrap(), Some(echo("b", 2)));
        sink.close().await.unwrap();
        assert_eq!(stream.message().await.unwrap(), None);
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "done");
}

#[test]
fn an_abandoned_client_joint_batch_yields_its_response_to_the_stream() {
    let env = Environment::new(2);
    let server = ServerBuilder::new(&env).register_service(joint_echo_service()).bind("127.0.0.1:0").build().unwrap();
    let channel = channel_to(&env, server.port());
    futures::executor::block_on(async {
        let (mut sink, mut stream) = channel.duplex(&BIDI, opts());
        let mut slow = request("slow", 1);
        slow.sleep_ms = 300;
        {
            let joint = sink.send_and_receive(slow, &mut stream);
            let timer = grpcore::timer::sleep(Duration::from_millis(50));
            futures::pin_mut!(joint);
            assert!(
                matches!(futures::future::select(joint, timer).await, futures::future::Either::Right(..)),
                "the echo came back before the server's 300 ms sleep"
            );
        }
        // The response of the abandoned joint batch comes through the stream, and the sink
        // sends again once that batch is over.
        assert_eq!(stream.message().await.unwrap(), Some(echo("slow", 1)));
        assert_eq!(sink.send_and_receive(request("c", 2), &mut stream).await.unwrap(), Some(echo("c", 2)));
        sink.close().await.unwrap();
        assert_eq!(stream.message().await.unwrap(), None);
    });
}

/// A stream's sends refill the buffer of the previous send instead of making a new one:
/// consecutive messages of sizes across every encoding path (empty, inlined up to 23 bytes,
/// one slice, 32 KiB and more through the writer), each with bytes of its own, arrive intact
/// both ways, on the joint API and on plain `send`/`message` (server and client).
#[test]
fn consecutive_messages_of_every_size_arrive_intact() {
    let env = Environment::new(1);
    let sizes = [0usize, 1, 23, 24, 100, 5_000, 40_000, 7, 200_000, 0, 64, 3];
    for (label, service) in [("joint", joint_echo_service()), ("plain", echo_service())] {
        let server = ServerBuilder::new(&env).register_service(service).bind("127.0.0.1:0").build().unwrap();
        let channel = channel_to(&env, server.port());
        let (mut sink, mut stream) = channel.duplex(&BIDI, opts());
        futures::executor::block_on(async {
            for (i, &n) in sizes.iter().enumerate() {
                let payload: Vec<u8> = (0..n).map(|b| (b * 31 + i * 7) as u8).collect();
                let req = EchoRequest {
                    payload: payload.clone(),
                    ..request(label, i as i64)
                };
                let reply = if label == "joint" {
                    sink.send_and_receive(req, &mut stream).await.unwrap()
                } else {
                    sink.send(req).await.unwrap();
                    stream.message().await.unwrap()
                };
                let reply = reply.expect("a reply");
                assert_eq!((reply.seq, reply.payload.len()), (i as i64, n), "{label}");
                assert!(reply.payload == payload, "{label}: message {i} ({n} bytes) came back altered");
            }
            sink.close().await.unwrap();
            assert!(stream.message().await.unwrap().is_none(), "{label}: the stream ends after the half-close");
        });
    }
}
