//! Deadline and cancellation propagation through a grpcore middle server to a backend:
//! the handler passes its call as parent of its outgoing call.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use grpcore::{CallOptions, ChannelBuilder, Code, Environment, ServerBuilder, ServerContext, ServiceBuilder, Status};

struct Backend {
    _server: grpcore::Server,
    port: u16,
    cancelled: Arc<AtomicBool>,
    started: Arc<AtomicBool>,
    deadline_seen: Arc<Mutex<Option<Duration>>>,
}

/// A backend whose handler waits (up to 10 s) for its call to be cancelled.
fn backend(env: &Environment) -> Backend {
    let cancelled = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let deadline_seen = Arc::new(Mutex::new(None));
    let (c, s, d) = (cancelled.clone(), started.clone(), deadline_seen.clone());
    let service = ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, move |req: EchoRequest, ctx: ServerContext| {
            let (c, s, d) = (c.clone(), s.clone(), d.clone());
            async move {
                *d.lock().unwrap() = ctx.time_remaining();
                s.store(true, Ordering::SeqCst);
                if !sleep_unless_cancelled(&ctx, 10_000).await {
                    c.store(true, Ordering::SeqCst);
                    return Err(Status::new(Code::Cancelled, "backend cancelled"));
                }
                Ok(EchoResponse { message: req.message, ..Default::default() })
            }
        })
        .build();
    let server = ServerBuilder::new(env).register_service(service).bind("127.0.0.1:0").build().unwrap();
    let port = server.port();
    Backend {
        _server: server,
        port,
        cancelled,
        started,
        deadline_seen,
    }
}

/// A middle server that forwards each call to the backend with its own call as parent.
fn middle(env: &Environment, backend_port: u16) -> grpcore::Server {
    let channel = ChannelBuilder::new(env).connect(&format!("127.0.0.1:{backend_port}")).unwrap();
    let service = ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, move |req: EchoRequest, ctx: ServerContext| {
            let call = channel.unary(&UNARY, &req, CallOptions::new().parent(&ctx));
            async move { call.await.map(|r| r.into_message()).map_err(Status::from) }
        })
        .build();
    ServerBuilder::new(env).register_service(service).bind("127.0.0.1:0").build().unwrap()
}

fn wait_for(flag: &AtomicBool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !flag.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "{what} did not happen within 20 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn the_client_deadline_reaches_the_backend_and_cancels_it() {
    let env = Environment::new(2);
    let backend = backend(&env);
    let middle = middle(&env, backend.port);
    let client = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", middle.port())).unwrap();
    let start = Instant::now();
    let err = client
        .unary(&UNARY, &request("deadline", 1), CallOptions::new().timeout(Duration::from_millis(200)))
        .wait()
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    // Far under the backend's 10 s sleep, with room for a loaded machine.
    assert!(start.elapsed() < Duration::from_secs(6), "{:?}", start.elapsed());
    wait_for(&backend.cancelled, "the backend call's cancellation");
    let seen = backend.deadline_seen.lock().unwrap().expect("the backend saw a deadline");
    assert!(seen <= Duration::from_millis(300), "the backend's deadline came from the client: {seen:?}");
}

#[test]
fn cancelling_the_client_call_cancels_the_backend_call() {
    let env = Environment::new(2);
    let backend = backend(&env);
    let middle = middle(&env, backend.port);
    let client = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", middle.port())).unwrap();
    let call = client.unary(&UNARY, &request("cancel", 1), CallOptions::new());
    wait_for(&backend.started, "the backend call");
    assert!(backend.deadline_seen.lock().unwrap().is_none(), "no deadline anywhere");
    drop(call);
    wait_for(&backend.cancelled, "the backend call's cancellation");
}
