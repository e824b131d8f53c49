//! The code a user writes for the API-friction items of issue #19: request builders where
//! a `Future` or `Stream` is expected, one spelling for a response's metadata, reading a
//! response stream with `message()`, and a shutdown that says how it went. (The codec out
//! of handler signatures is shown by the examples' servers and `tests/common`; typed errors
//! by `src/error.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::TryStreamExt;
use grpcore::{
    CallOptions, ClientStreamingCall, Code, Environment, Error, Metadata, RequestSink, ServerStreamingRequest,
    UnaryRequest,
};

fn echo_options() -> CallOptions {
    let mut md = Metadata::new();
    md.append("x-echo-who", "friction").unwrap();
    CallOptions::new().metadata(md).timeout(Duration::from_secs(10))
}

#[test]
fn request_builders_go_where_futures_and_streams_go() {
    let env = Environment::new(1);
    let server = start_echo_server(&env);
    let channel = grpcore::ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let unary = |m: &str, seq| UnaryRequest::new(&channel, UNARY, request(m, seq), CallOptions::new());

    // block_on takes the builder as it is.
    assert_eq!(futures::executor::block_on(unary("block", 1)).unwrap().message, "block");

    // join_all: several builders at once.
    let replies = futures::executor::block_on(futures::future::join_all((0..3).map(|i| unary("joined", i))));
    let seqs: Vec<i64> = replies.into_iter().map(|r| r.unwrap().seq).collect();
    assert_eq!(seqs, [0, 1, 2]);

    // tokio::spawn: the builder owns a channel handle, so it is 'static and Send.
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let spawned = rt.block_on(async { tokio::spawn(unary("spawned", 7)).await.unwrap() }).unwrap();
    assert_eq!((spawned.message.as_str(), spawned.seq), ("spawned", 7));

    // A server-streaming builder is the stream of its responses.
    let all: Vec<_> = futures::executor::block_on(
        ServerStreamingRequest::new(&channel, SERVER_STREAM, request("s", 3), CallOptions::new()).try_collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1, 2]);

    // An error still arrives through the future.
    let failing = EchoRequest {
        fail_code: Code::NotFound as i32,
        fail_message: "nope".into(),
        ..request("f", 0)
    };
    match futures::executor::block_on(UnaryRequest::new(&channel, UNARY, failing, CallOptions::new())) {
        Err(Error::Rpc(status)) => assert_eq!(status.code(), Code::NotFound),
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
}

async fn send_two(sink: &mut RequestSink<EchoRequest>) {
    sink.send(request("a", 0)).await.unwrap();
    sink.send(request("b", 1)).await.unwrap();
    sink.close().await.unwrap();
}

#[test]
fn response_metadata_has_one_spelling_for_unary_and_client_streaming() {
    let env = Environment::new(1);
    let server = start_echo_server(&env);
    let channel = grpcore::ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    futures::executor::block_on(async {
        // Unary: `.await` is the message, `.response().await` the whole response.
        let message = UnaryRequest::new(&channel, UNARY, request("u", 1), echo_options()).await.unwrap();
        assert_eq!(message.message, "u");
        let response = UnaryRequest::new(&channel, UNARY, request("u", 1), echo_options()).response().await.unwrap();
        assert_eq!(response.initial_metadata().get("x-echo-who"), Some("friction"));
        assert_eq!(response.trailing_metadata().get("x-trailer-who"), Some("friction"));

        // Client streaming: the same two spellings on the call half.
        let (mut sink, call): (_, ClientStreamingCall<EchoResponse>) = channel.client_streaming(&CLIENT_STREAM, echo_options());
        send_two(&mut sink).await;
        let message = call.await.unwrap();
        assert_eq!(message.message, "a,b");
        let (mut sink, call) = channel.client_streaming(&CLIENT_STREAM, echo_options());
        send_two(&mut sink).await;
        let response = call.response().await.unwrap();
        assert_eq!(response.message().message, "a,b");
        assert_eq!(response.initial_metadata().get("x-echo-who"), Some("friction"));
        assert_eq!(response.trailing_metadata().get("x-trailer-who"), Some("friction"));
    });
}

#[test]
fn a_response_stream_reads_with_message_like_a_request_stream() {
    let env = Environment::new(1);
    let server = start_echo_server(&env);
    let channel = grpcore::ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    futures::executor::block_on(async {
        let mut stream = channel.server_streaming(&SERVER_STREAM, &request("m", 3), echo_options());
        let mut seqs = Vec::new();
        while let Some(reply) = stream.message().await.unwrap() {
            seqs.push(reply.seq);
        }
        assert_eq!(seqs, [0, 1, 2]);
        assert_eq!(stream.trailing_metadata().unwrap().get("x-trailer-who"), Some("friction"));
        // After the end: still `None`, no error.
        assert!(stream.message().await.unwrap().is_none());

        // A failed call: the status, once.
        let failing = EchoRequest {
            fail_code: Code::Aborted as i32,
            ..request("m", 1)
        };
        let mut stream = channel.server_streaming(&SERVER_STREAM, &failing, CallOptions::new());
        assert_eq!(stream.message().await.unwrap().unwrap().seq, 0);
        assert_eq!(stream.message().await.unwrap_err().code(), Code::Aborted);
    });
}

#[test]
fn shutdown_reports_whether_the_grace_ran_out_and_what_it_cancelled() {
    let env = Environment::new(1);

    // Nothing in flight: awaited, the report says the grace was not needed.
    let server = start_echo_server(&env);
    let report = futures::executor::block_on(server.shutdown(Duration::from_secs(5))).unwrap();
    assert!(!report.grace_expired, "{report:?}");
    assert_eq!(report.cancelled_calls, 0);
    assert!(report.elapsed < Duration::from_secs(5), "{report:?}");

    // Two calls sleeping in their handlers past a 200 ms grace: both cancelled.
    let server = start_echo_server(&env);
    let channel = grpcore::ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let sleeper = EchoRequest {
        sleep_ms: 20_000,
        ..request("slow", 0)
    };
    let calls: Vec<_> = (0..2).map(|_| channel.unary(&UNARY, &sleeper, CallOptions::new().wait_for_ready(true))).collect();
    // Wait until both handlers run (the core reports them as started on the server).
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let report = server.shutdown(Duration::from_millis(200)).wait().unwrap();
    assert!(report.grace_expired, "{report:?}");
    assert_eq!(report.cancelled_calls, 2, "{report:?}");
    assert!(report.elapsed >= Duration::from_millis(200), "{report:?}");
    for call in calls {
        let err = call.wait().unwrap_err();
        assert!(matches!(err.code(), Code::Cancelled | Code::Unavailable), "{err}");
    }
    assert!(started.elapsed() < Duration::from_secs(10), "the calls ended with the shutdown, not their sleep");
}
