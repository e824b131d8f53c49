//! Dropping the environment, channel, server and in-flight calls in every order finishes
//! within a bounded time (no hang), and nothing is left running.

mod common;

use std::time::Duration;

use common::*;
use grpcore::{CallOptions, ChannelBuilder, Environment};

/// Runs `f` on a thread and fails if it does not finish within `limit`.
fn bounded(name: &str, limit: Duration, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{name}: did not finish within {limit:?}"));
}

#[derive(Clone, Copy, Debug)]
enum Part {
    Env,
    Channel,
    Server,
    Call,
}

fn permutations(items: &[Part]) -> Vec<Vec<Part>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first);
            out.push(p);
        }
    }
    out
}

#[test]
fn every_drop_order_with_a_call_in_flight_is_bounded() {
    let orders = permutations(&[Part::Env, Part::Channel, Part::Server, Part::Call]);
    assert_eq!(orders.len(), 24);
    for order in orders {
        let name = format!("{order:?}");
        bounded(&name.clone(), Duration::from_secs(15), move || {
            let env = Environment::new(2);
            let server = start_echo_server(&env);
            let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
            // A call that would take 30 s: dropping things must not wait for it.
            let mut req = request("slow", 1);
            req.sleep_ms = 30_000;
            let call = channel.unary(&UNARY, &req, CallOptions::new());
            // Make sure it reached the server first.
            channel.unary(&UNARY, &request("warm", 2), CallOptions::new()).wait().unwrap();
            let (mut env, mut server, mut channel, mut call) = (Some(env), Some(server), Some(channel), Some(call));
            for part in order {
                match part {
                    Part::Env => drop(env.take()),
                    Part::Channel => drop(channel.take()),
                    Part::Server => drop(server.take()),
                    Part::Call => drop(call.take()),
                }
            }
        });
    }
}

#[test]
fn server_shutdown_is_graceful_then_forced() {
    bounded("shutdown", Duration::from_secs(20), || {
        let env = Environment::new(1);
        let server = start_echo_server(&env);
        let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
        // An in-flight call shorter than the grace period completes normally. The grace is
        // 3 s for a 300 ms handler (already running when the shutdown starts), so valgrind
        // on a loaded machine still finishes it in time.
        let mut short = request("short", 1);
        short.sleep_ms = 300;
        let short_call = channel.unary(&UNARY, &short, CallOptions::new());
        // One longer than the grace period is cancelled when it runs out.
        let mut long = request("long", 2);
        long.sleep_ms = 30_000;
        let long_call = channel.unary(&UNARY, &long, CallOptions::new());
        channel.unary(&UNARY, &request("warm", 3), CallOptions::new()).wait().unwrap();
        let start = std::time::Instant::now();
        server.shutdown(Duration::from_secs(3)).wait().unwrap();
        let took = start.elapsed();
        // Far under the long call's 30 s: the grace ran out and the call was cancelled.
        assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
        assert_eq!(short_call.wait().unwrap().message().seq, 1);
        let err = long_call.wait().unwrap_err();
        assert!(
            matches!(err.code(), grpcore::Code::Cancelled | grpcore::Code::Unavailable),
            "{err}"
        );
        // New calls are refused.
        let err = channel
            .unary(&UNARY, &request("late", 4), CallOptions::new().timeout(Duration::from_secs(2)))
            .wait()
            .unwrap_err();
        assert_eq!(err.code(), grpcore::Code::Unavailable, "{err}");
    });
}

#[test]
fn environment_dropped_from_inside_its_own_thread_does_not_hang() {
    bounded("self-drop", Duration::from_secs(10), || {
        let env = Environment::new(1);
        let inner = env.clone();
        let handle = env.spawn(async move {
            drop(inner);
            7
        });
        drop(env);
        assert_eq!(futures::executor::block_on(handle).unwrap(), 7);
    });
}

#[test]
fn many_environments_come_and_go() {
    bounded("churn", Duration::from_secs(30), || {
        for _ in 0..20 {
            let env = Environment::new(2);
            let server = start_echo_server(&env);
            let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
            channel.unary(&UNARY, &request("x", 1), CallOptions::new()).wait().unwrap();
        }
    });
}

#[test]
fn dropping_a_client_environment_with_a_call_to_an_outside_server_in_flight_is_bounded() {
    // The server lives in another environment, so dropping the client's environment and
    // channel cancels nothing by itself: the in-flight call keeps the client environment
    // alive, and dropping the call then cancels it and lets the threads go.
    let server_env = Environment::new(1);
    let server = start_echo_server(&server_env);
    let port = server.port();
    bounded("client env with a call to another env's server", Duration::from_secs(10), move || {
        let env = Environment::new(1);
        let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{port}")).unwrap();
        channel.unary(&UNARY, &request("warm", 1), CallOptions::new()).wait().unwrap();
        let mut req = request("slow", 2);
        req.sleep_ms = 60_000;
        let call = channel.unary(&UNARY, &req, CallOptions::new());
        drop(env);
        drop(channel);
        std::thread::sleep(Duration::from_millis(100));
        drop(call);
    });
    drop(server);
}
