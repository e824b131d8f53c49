//! Timers for handlers on the completion-queue executor: grpcore's own (`grpcore::timer`,
//! one thread for all), and a tokio runtime's, entered on the queue threads with
//! `EnvBuilder::around_threads`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use grpcore::{CallOptions, ChannelBuilder, Code, EnvBuilder, Environment, ServerBuilder, ServiceBuilder, Status};

/// Threads of this process now.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn a_hundred_handlers_sleep_at_once_on_grpcores_timer_without_a_thread_each() {
    let env = Environment::new(1);
    let service = ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, |req: EchoRequest, _ctx| async move {
            grpcore::timer::sleep(Duration::from_millis(req.sleep_ms as u64)).await;
            // A timeout that fires, and one that does not.
            let late = grpcore::timer::timeout(Duration::from_millis(5), std::future::pending::<()>()).await;
            let early = grpcore::timer::timeout(Duration::from_secs(5), async { 1 }).await;
            if late.is_ok() || early != Ok(1) {
                return Err(Status::internal("timeout misbehaved"));
            }
            Ok(EchoResponse { message: req.message, seq: req.seq, payload: vec![] })
        })
        .build();
    let server = ServerBuilder::new(&env).register_service(service).bind("127.0.0.1:0").build().unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    channel.unary(&UNARY, &request("warm", 0), CallOptions::new()).wait().unwrap();
    let before = threads();
    let start = Instant::now();
    let peak = std::sync::atomic::AtomicUsize::new(0);
    let seqs = futures::executor::block_on(async {
        let calls = (0..100).map(|i| {
            let req = EchoRequest { sleep_ms: 300, ..request("t", i) };
            channel.unary(&UNARY, &req, CallOptions::new().timeout(Duration::from_secs(30)))
        });
        let all = futures::future::join_all(calls);
        let watch = async {
            // While the handlers sleep: no thread per sleeping handler.
            grpcore::timer::sleep(Duration::from_millis(150)).await;
            peak.store(threads(), std::sync::atomic::Ordering::SeqCst);
        };
        let (replies, ()) = futures::join!(all, watch);
        replies.into_iter().map(|r| r.unwrap().message().seq).collect::<Vec<_>>()
    });
    let took = start.elapsed();
    assert_eq!(seqs, (0..100).collect::<Vec<i64>>());
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(10), "took {took:?}");
    let peak = peak.load(std::sync::atomic::Ordering::SeqCst);
    assert!(peak < before + 50, "threads went from {before} to {peak} while 100 handlers slept");
}

/// A handler that sleeps on tokio's timer.
fn tokio_sleeping_server(env: &Environment) -> grpcore::Server {
    let service = ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, |req: EchoRequest, _ctx| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(EchoResponse { message: req.message, seq: req.seq, payload: vec![] })
        })
        .build();
    ServerBuilder::new(env).register_service(service).bind("127.0.0.1:0").build().unwrap()
}

#[test]
fn tokio_timers_work_in_handlers_once_the_queue_threads_enter_a_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_time().build().unwrap();
    let handle = rt.handle().clone();
    let env = EnvBuilder::new()
        .cq_count(1)
        .around_threads(move |run| {
            let _entered = handle.enter();
            run()
        })
        .build();
    let server = tokio_sleeping_server(&env);
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let reply = channel.unary(&UNARY, &request("tokio", 3), CallOptions::new().timeout(Duration::from_secs(20))).wait().unwrap();
    assert_eq!(reply.message().seq, 3);

    // Without the runtime's context the same handler panics: the client sees INTERNAL.
    let plain = Environment::new(1);
    let server = tokio_sleeping_server(&plain);
    let channel = ChannelBuilder::new(&plain).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let err = channel.unary(&UNARY, &request("tokio", 3), CallOptions::new().timeout(Duration::from_secs(20))).wait().unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err}");
}
