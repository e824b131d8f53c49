//! Handlers on an executor the user supplies: with a tokio runtime handle, handlers can use
//! tokio's timers (which panic on a completion-queue thread: grpc-rs issue #338).

mod common;

use std::time::Duration;

use common::*;
use grpcore::{CallOptions, ChannelBuilder, Code, Environment, ServerBuilder, ServiceBuilder, Status};

fn tokio_sleepy_service() -> grpcore::Service {
    ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, |req: EchoRequest, _ctx| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok::<_, Status>(EchoResponse { message: req.message, seq: req.seq, ..Default::default() })
        })
        .add_duplex(&BIDI, bidi_echo)
        .build()
}

#[test]
fn handlers_spawned_on_a_tokio_runtime_can_use_tokio() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let handle = runtime.handle().clone();
    let env = Environment::new(1);
    let server = ServerBuilder::new(&env)
        .register_service(tokio_sleepy_service())
        .spawn_handlers_with(move |handler| {
            handle.spawn(handler);
        })
        .bind("127.0.0.1:0")
        .build()
        .unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    for i in 0..20 {
        let reply = channel.unary(&UNARY, &request("tokio", i), CallOptions::new()).wait().unwrap();
        assert_eq!(reply.message().seq, i);
    }
    // Streams work the same way from a handler on tokio.
    let (mut sink, stream) = channel.duplex(&BIDI, CallOptions::new());
    for i in 0..5 {
        sink.send_blocking(request("b", i)).unwrap();
    }
    sink.close_blocking().unwrap();
    let seqs: Vec<i64> = stream.into_blocking_iter().map(|r| r.unwrap().seq).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
}

#[test]
fn without_a_spawner_a_tokio_timer_in_a_handler_panics_into_internal() {
    // The default runs handlers on the completion-queue thread, outside any tokio runtime:
    // tokio::time::sleep panics there, which the server turns into INTERNAL and survives.
    let env = Environment::new(1);
    let server = ServerBuilder::new(&env)
        .register_service(tokio_sleepy_service())
        .bind("127.0.0.1:0")
        .build()
        .unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let err = channel.unary(&UNARY, &request("x", 1), CallOptions::new()).wait().unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err}");
    assert!(err.to_string().contains("panicked"), "{err}");
}
