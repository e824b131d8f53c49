//! Channel connectivity: states, watching for changes, waiting for a connection.

mod common;

use std::time::{Duration, Instant};

use common::*;
use grpcore::{CallOptions, ChannelBuilder, Code, ConnectivityState, Environment, Error};

/// An address nobody listens on, and nobody else can start listening on meanwhile: a unix
/// socket path of our own that does not exist (a TCP port bound and released could be
/// taken by another process's server before the channel dials it).
fn closed_address(name: &str) -> String {
    fresh_unix_address(&format!("closed-{name}"))
}

/// Follows state changes until `want` (or panics at `within`); returns the states seen.
fn wait_for_state(channel: &grpcore::Channel, want: ConnectivityState, within: Duration) -> Vec<ConnectivityState> {
    let deadline = Instant::now() + within;
    let mut seen = vec![channel.state(true)];
    while *seen.last().unwrap() != want {
        let last = *seen.last().unwrap();
        match futures::executor::block_on(channel.state_changed(last, deadline)) {
            Some(next) => seen.push(next),
            None => panic!("no {want:?} within {within:?}; states seen: {seen:?}"),
        }
    }
    seen
}

#[test]
fn channel_to_a_live_server_goes_from_idle_to_ready() {
    let env = Environment::new(1);
    let server = start_echo_server(&env);
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    // Lazy: nothing happens until someone asks.
    assert_eq!(channel.state(false), ConnectivityState::Idle);
    let start = Instant::now();
    futures::executor::block_on(channel.wait_for_connected(Instant::now() + Duration::from_secs(10))).unwrap();
    assert_eq!(channel.state(false), ConnectivityState::Ready);
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    // Already ready: returns at once.
    futures::executor::block_on(channel.wait_for_connected(Instant::now() + Duration::from_secs(1))).unwrap();
    let reply = channel.unary(&UNARY, &request("ready", 1), CallOptions::new()).wait().unwrap();
    assert_eq!(reply.message().seq, 1);
}

#[test]
fn idle_channel_watch_times_out_with_none_at_its_deadline() {
    let env = Environment::new(1);
    let channel = ChannelBuilder::new(&env).connect(&closed_address("idle-watch")).unwrap();
    let start = Instant::now();
    let changed = futures::executor::block_on(channel.state_changed(ConnectivityState::Idle, start + Duration::from_millis(300)));
    let took = start.elapsed();
    assert_eq!(changed, None, "nobody asked the channel to connect, so it stays idle");
    assert!(took >= Duration::from_millis(290) && took < Duration::from_secs(3), "took {took:?}");
    // A watch for a state the channel is not in fires at once.
    let changed = futures::executor::block_on(channel.state_changed(ConnectivityState::Ready, Instant::now() + Duration::from_secs(5)));
    assert_eq!(changed, Some(ConnectivityState::Idle));
}

#[test]
fn closed_address_reaches_transient_failure_and_wait_for_connected_times_out() {
    let env = Environment::new(1);
    let channel = ChannelBuilder::new(&env).connect(&closed_address("transient-failure")).unwrap();
    let seen = wait_for_state(&channel, ConnectivityState::TransientFailure, Duration::from_secs(10));
    assert_eq!(seen[0], ConnectivityState::Idle, "{seen:?}");
    assert!(!seen.contains(&ConnectivityState::Ready), "{seen:?}");

    let start = Instant::now();
    let err = futures::executor::block_on(channel.wait_for_connected(start + Duration::from_millis(500))).unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert!(err.to_string().contains("not ready by the deadline"), "{err}");
    assert!(took >= Duration::from_millis(490) && took < Duration::from_secs(3), "took {took:?}");
    // A call fails fast while the channel is in transient failure.
    let err = channel.unary(&UNARY, &request("x", 1), CallOptions::new()).wait().unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
}

#[test]
fn wait_for_connected_sees_a_server_that_comes_up_late() {
    let env = Environment::new(1);
    // An address nothing listens on yet; the server starts on it a little later.
    let address = fresh_unix_address("late-connect");
    let channel = ChannelBuilder::new(&env).connect(&address).unwrap();
    let server_env = env.clone();
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        grpcore::ServerBuilder::new(&server_env)
            .register_service(echo_service())
            .bind(address)
            .build()
            .unwrap()
    });
    // The core's reconnect backoff starts at 1 s (with jitter) and grows 1.6x per attempt.
    futures::executor::block_on(channel.wait_for_connected(Instant::now() + Duration::from_secs(20))).unwrap();
    let _server = late.join().unwrap();
    assert_eq!(channel.state(false), ConnectivityState::Ready);
}

#[test]
fn server_going_away_takes_a_ready_channel_out_of_ready() {
    let env = Environment::new(1);
    let server = start_echo_server(&env);
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    futures::executor::block_on(channel.wait_for_connected(Instant::now() + Duration::from_secs(10))).unwrap();
    let watch = channel.state_changed(ConnectivityState::Ready, Instant::now() + Duration::from_secs(10));
    futures::executor::block_on(server.shutdown(Duration::ZERO)).unwrap();
    let next = futures::executor::block_on(watch).expect("the state changed before the deadline");
    assert_ne!(next, ConnectivityState::Ready);
}

#[test]
fn dropping_a_pending_watch_and_the_channel_is_safe() {
    let env = Environment::new(1);
    let channel = ChannelBuilder::new(&env).connect(&closed_address("dropped-watches")).unwrap();
    // Pending watches do not keep the channel alive; nothing waits for them.
    let watches: Vec<_> = (0..10)
        .map(|_| channel.state_changed(ConnectivityState::Idle, Instant::now() + Duration::from_millis(200)))
        .collect();
    drop(channel);
    drop(watches);
    drop(env);
    // Another watch on a fresh environment after the old one wound down: dropping its
    // channel ends it at once with Shutdown, long before its deadline.
    let env = Environment::new(1);
    let channel = ChannelBuilder::new(&env).connect(&closed_address("dropped-watch")).unwrap();
    let watch = channel.state_changed(ConnectivityState::Idle, Instant::now() + Duration::from_secs(60));
    let start = Instant::now();
    drop(channel);
    assert_eq!(futures::executor::block_on(watch), Some(ConnectivityState::Shutdown));
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
}

#[test]
fn watch_futures_complete_under_tokio_and_inside_cq_tasks() {
    let env = Environment::new(2);
    let server = start_echo_server(&env);
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let ch = channel.clone();
    rt.block_on(async move { ch.wait_for_connected(Instant::now() + Duration::from_secs(10)).await })
        .unwrap();
    let ch = channel.clone();
    let state = futures::executor::block_on(env.spawn(async move {
        ch.state_changed(ConnectivityState::Idle, Instant::now() + Duration::from_secs(5)).await
    }))
    .unwrap();
    assert_eq!(state, Some(ConnectivityState::Ready));
    let result: Result<(), Error> = futures::executor::block_on(env.spawn({
        let ch = channel.clone();
        async move { ch.wait_for_connected(Instant::now() + Duration::from_secs(5)).await }
    }))
    .unwrap();
    result.unwrap();
}
