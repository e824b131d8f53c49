//! The health service (`grpcore::health`): Check and Watch through grpcore's client and
//! through grpcio's (`grpcio-health-checking`), grpcore's client against grpcio's health
//! server, the lame-duck phase of a server's shutdown, and the C core's client-side health
//! checking over three backends.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::*;
use futures::executor::block_on;
use futures::StreamExt;
use grpcore::health::{HealthCheckRequest, HealthCheckResponse, HealthClient, HealthReporter, ServingStatus};
use grpcore::{
    CallOptions, Channel, ChannelBuilder, Code, Environment, Error, ResponseStream, Server, ServerBuilder,
    ServiceBuilder, Status,
};

/// The deadline of every call here: whatever hangs fails within it.
const WAIT: Duration = Duration::from_secs(30);

type Watch = ResponseStream<HealthCheckResponse>;

fn ask(service: &str) -> HealthCheckRequest {
    HealthCheckRequest { service: service.into() }
}

fn health_client(env: &Environment, port: u16) -> HealthClient {
    let channel = ChannelBuilder::new(env).connect(&format!("127.0.0.1:{port}")).unwrap();
    HealthClient::new(channel).with_default_options(CallOptions::new().timeout(WAIT).wait_for_ready(true))
}

/// A server with `health`'s service and the echo service.
fn server_with(env: &Environment, health: &HealthReporter, configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> Server {
    let builder = ServerBuilder::new(env)
        .register_service(health.service())
        .register_service(echo_service())
        .bind("127.0.0.1:0");
    configure(builder).build().unwrap()
}

/// The next status a watch sends.
fn next_status(watch: &mut Watch) -> Result<ServingStatus, Error> {
    match block_on(watch.next()) {
        Some(Ok(reply)) => Ok(reply.status()),
        Some(Err(e)) => Err(e),
        None => panic!("the watch ended with OK"),
    }
}

fn check(client: &HealthClient, service: &str) -> Result<ServingStatus, Error> {
    client.check(ask(service)).wait().map(|reply| reply.status())
}

#[test]
fn check_answers_known_services_and_not_found_for_others() {
    let env = Environment::new(1);
    let health = HealthReporter::new();
    health.set_status(SERVICE, ServingStatus::NotServing);
    let server = server_with(&env, &health, |b| b);
    let client = health_client(&env, server.port());
    assert_eq!(check(&client, "").unwrap(), ServingStatus::Serving, "the server as a whole starts SERVING");
    assert_eq!(check(&client, SERVICE).unwrap(), ServingStatus::NotServing);
    let err = check(&client, "no.such.Service").unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    health.clear_status(SERVICE);
    assert_eq!(check(&client, SERVICE).unwrap_err().code(), Code::NotFound);
}

#[test]
fn watch_sees_every_change_in_order() {
    let env = Environment::new(1);
    let health = HealthReporter::new();
    let server = server_with(&env, &health, |b| b);
    let client = health_client(&env, server.port());

    // Unknown first, and the call stays open until the service appears.
    let mut watch = client.watch(ask(SERVICE)).start();
    assert_eq!(next_status(&mut watch).unwrap(), ServingStatus::ServiceUnknown);
    health.set_status(SERVICE, ServingStatus::Serving);
    assert_eq!(next_status(&mut watch).unwrap(), ServingStatus::Serving);

    // One change at a time, each seen before the next is made.
    for status in [ServingStatus::NotServing, ServingStatus::Serving, ServingStatus::NotServing, ServingStatus::Serving] {
        health.set_status(SERVICE, status);
        assert_eq!(next_status(&mut watch).unwrap(), status);
    }

    // Changes made faster than the watcher reads all arrive, in order; setting the same
    // status twice in a row is one change.
    let mut second = client.watch(ask(SERVICE)).start();
    assert_eq!(next_status(&mut second).unwrap(), ServingStatus::Serving);
    let burst = [
        ServingStatus::NotServing,
        ServingStatus::NotServing,
        ServingStatus::Serving,
        ServingStatus::NotServing,
        ServingStatus::Serving,
    ];
    for status in burst {
        health.set_status(SERVICE, status);
    }
    for want in [ServingStatus::NotServing, ServingStatus::Serving, ServingStatus::NotServing, ServingStatus::Serving] {
        assert_eq!(next_status(&mut watch).unwrap(), want);
        assert_eq!(next_status(&mut second).unwrap(), want);
    }
    // A watcher of another service saw none of it.
    let mut whole = client.watch(ask("")).start();
    assert_eq!(next_status(&mut whole).unwrap(), ServingStatus::Serving);
    health.clear_status(SERVICE);
    assert_eq!(next_status(&mut watch).unwrap(), ServingStatus::ServiceUnknown);
    health.set_status("", ServingStatus::NotServing);
    assert_eq!(next_status(&mut whole).unwrap(), ServingStatus::NotServing);
}

/// Shuts `server` down with `grace` and waits (bounded) for it to stop; returns how long
/// the shutdown took.
fn shut_down(server: Server, grace: Duration) -> (mpsc::Receiver<Duration>, Instant) {
    let start = Instant::now();
    let stopping = server.shutdown(grace);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = stopping.wait();
        let _ = tx.send(start.elapsed());
    });
    (rx, start)
}

#[test]
fn shutdown_tells_watchers_not_serving_before_the_listener_closes() {
    let env = Environment::new(2);
    let health = HealthReporter::new();
    health.set_status(SERVICE, ServingStatus::Serving);
    // A probe service registered after the health service: its shutdown hook runs after
    // health's, waits until the test's watchers have received NOT_SERVING, then checks that
    // a new connection is still served (no lame-duck period is set: the listener closes
    // right after the hooks).
    let port = Arc::new(AtomicU16::new(0));
    let (saw_tx, saw_rx) = mpsc::channel::<()>();
    let (probe_tx, probe_rx) = mpsc::channel();
    let probe = {
        let (env, port) = (env.clone(), port.clone());
        ServiceBuilder::new("grpcore.test.Probe")
            .on_shutdown(move |_deadline| {
                let seen = saw_rx.recv_timeout(Duration::from_secs(10)).is_ok();
                let target = format!("127.0.0.1:{}", port.load(Ordering::Relaxed));
                let fresh = HealthClient::new(ChannelBuilder::new(&env).connect(&target).unwrap());
                let answer = fresh.check(ask("")).timeout(Duration::from_secs(5)).wait().map(|r| r.status());
                let _ = probe_tx.send((seen, answer));
            })
            .build()
    };
    let server = server_with(&env, &health, |b| b.register_service(probe));
    port.store(server.port(), Ordering::Relaxed);
    let client = health_client(&env, server.port());
    let mut watches: Vec<Watch> = ["", SERVICE].iter().map(|s| client.watch(ask(s)).start()).collect();
    for watch in &mut watches {
        assert_eq!(next_status(watch).unwrap(), ServingStatus::Serving);
    }

    let grace = Duration::from_secs(20);
    let (stopped, _) = shut_down(server, grace);
    for watch in &mut watches {
        assert_eq!(next_status(watch).unwrap(), ServingStatus::NotServing);
    }
    saw_tx.send(()).unwrap();
    let (seen, answer) = probe_rx.recv_timeout(WAIT).expect("the probe's hook ran");
    assert!(seen, "the hook saw the watchers' NOT_SERVING");
    assert_eq!(answer.unwrap(), ServingStatus::NotServing, "a new connection was served after the watchers saw NOT_SERVING");
    for watch in &mut watches {
        // The watch ends only once the server refuses calls (its listeners closed).
        let end = next_status(watch).unwrap_err();
        assert_eq!(end.code(), Code::Unavailable, "{end}");
    }
    assert_eq!(health.status(SERVICE), Some(ServingStatus::NotServing));
    // The watches did not hold the shutdown for its grace period.
    let took = stopped.recv_timeout(WAIT).expect("the server stopped");
    assert!(took < Duration::from_secs(5), "the shutdown took {took:?}");
    // And the listener is closed now: a fresh channel finds nobody.
    let fresh = HealthClient::new(ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", port.load(Ordering::Relaxed))).unwrap());
    let err = fresh.check(ask("")).timeout(Duration::from_secs(5)).wait().unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
}

#[test]
fn lame_duck_period_keeps_accepting_calls_while_reporting_not_serving() {
    let env = Environment::new(2);
    let health = HealthReporter::new();
    let period = Duration::from_millis(1500);
    let server = server_with(&env, &health, |b| b.lame_duck_period(period));
    let port = server.port();
    let client = health_client(&env, port);
    let mut watch = client.watch(ask("")).start();
    assert_eq!(next_status(&mut watch).unwrap(), ServingStatus::Serving);

    let (stopped, start) = shut_down(server, Duration::from_secs(20));
    assert_eq!(next_status(&mut watch).unwrap(), ServingStatus::NotServing);
    // NOT_SERVING is out and the listener still accepts: a new connection's call is served.
    let fresh = health_client(&env, port);
    assert_eq!(check(&fresh, "").unwrap(), ServingStatus::NotServing);
    let echo = fresh.channel().unary(&UNARY, &request("late", 1), CallOptions::new().timeout(WAIT)).wait().unwrap();
    assert_eq!(echo.message().message, "late");
    // Changes are ignored now.
    health.set_status("", ServingStatus::Serving);
    // After the period the server refuses calls and the watch ends.
    let end = next_status(&mut watch).unwrap_err();
    assert_eq!(end.code(), Code::Unavailable, "{end}");
    assert!(start.elapsed() >= period, "the watch ended after {:?}", start.elapsed());
    let took = stopped.recv_timeout(WAIT).expect("the server stopped");
    assert!(took < period + Duration::from_secs(5), "the shutdown took {took:?}");
    let late = HealthClient::new(ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{port}")).unwrap());
    assert_eq!(late.check(ask("")).timeout(Duration::from_secs(5)).wait().unwrap_err().code(), Code::Unavailable);
}

/// A backend: its health service and an echo service whose Unary answers with `name`.
fn backend(env: &Environment, name: &str) -> (Server, HealthReporter) {
    let health = HealthReporter::new();
    health.set_status(SERVICE, ServingStatus::Serving);
    let name = name.to_string();
    let named = ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, move |req: EchoRequest, _ctx| {
            let name = name.clone();
            async move { Ok::<_, Status>(EchoResponse { message: name, seq: req.seq, payload: Vec::new() }) }
        })
        .build();
    let server = ServerBuilder::new(env)
        .register_service(health.service())
        .register_service(named)
        .bind("127.0.0.1:0")
        .build()
        .unwrap();
    (server, health)
}

/// The name of the backend that answered one call.
fn who(channel: &Channel, seq: i64) -> String {
    let opts = CallOptions::new().timeout(WAIT).wait_for_ready(true);
    channel.unary(&UNARY, &request("who", seq), opts).wait().unwrap().into_message().message
}

fn spread(channel: &Channel, n: i64) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        *counts.entry(who(channel, i)).or_default() += 1;
    }
    counts
}

/// Makes calls until `done` says yes about the last `window` answers, for at most 10 s.
fn calls_until(channel: &Channel, window: usize, done: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last: Vec<String> = Vec::new();
    let mut seq = 0;
    loop {
        last.push(who(channel, seq));
        seq += 1;
        if last.len() > window {
            last.remove(0);
        }
        if last.len() == window && done(&last) {
            return;
        }
        assert!(Instant::now() < deadline, "the channel did not settle within 10 s; last answers: {last:?}");
    }
}

#[test]
fn client_side_health_checking_skips_a_not_serving_backend() {
    let env = Environment::new(2);
    let backends: Vec<(Server, HealthReporter)> = ["a", "b", "c"].iter().map(|n| backend(&env, n)).collect();
    let target = format!(
        "ipv4:{}",
        backends.iter().map(|(s, _)| format!("127.0.0.1:{}", s.port())).collect::<Vec<_>>().join(",")
    );
    let channel = ChannelBuilder::new(&env).health_check(SERVICE).connect(&target).unwrap();
    // Until every backend's first watch answered, calls go to those that did.
    calls_until(&channel, 3, |last| {
        let mut names = last.to_vec();
        names.sort();
        names == ["a", "b", "c"]
    });
    let counts = spread(&channel, 300);
    for name in ["a", "b", "c"] {
        let n = counts.get(name).copied().unwrap_or(0);
        assert!((80..=120).contains(&n), "{name} got {n} of 300: {counts:?}");
    }

    // "b" says it is not serving: once the core has seen it, "b" gets nothing.
    backends[1].1.set_status(SERVICE, ServingStatus::NotServing);
    calls_until(&channel, 20, |last| last.iter().all(|n| n != "b"));
    let counts = spread(&channel, 300);
    assert_eq!(counts.get("b"), None, "{counts:?}");
    for name in ["a", "c"] {
        let n = counts.get(name).copied().unwrap_or(0);
        assert!((130..=170).contains(&n), "{name} got {n} of 300: {counts:?}");
    }

    // Back to serving: "b" gets its share again.
    backends[1].1.set_status(SERVICE, ServingStatus::Serving);
    calls_until(&channel, 1, |last| last[0] == "b");
    let counts = spread(&channel, 300);
    for name in ["a", "b", "c"] {
        let n = counts.get(name).copied().unwrap_or(0);
        assert!((80..=120).contains(&n), "{name} got {n} of 300: {counts:?}");
    }
}

#[test]
fn grpcio_health_stub_against_grpcore_server() {
    let env = Environment::new(1);
    let health = HealthReporter::new();
    health.set_status(SERVICE, ServingStatus::Serving);
    let server = server_with(&env, &health, |b| b);
    let mut child = python_script("health_client.py")
        .arg(format!("127.0.0.1:{}", server.port()))
        .arg(SERVICE)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start health_client.py (scripts/setup.sh installs grpcio-health-checking)");
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The client prints each status its watch receives; the next change waits for it.
    let mut seen = Vec::new();
    let mut summary = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while summary.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(left) else { break };
        match line.as_str() {
            "WATCH SERVING" if seen.is_empty() => health.set_status(SERVICE, ServingStatus::NotServing),
            "WATCH NOT_SERVING" => health.set_status(SERVICE, ServingStatus::Serving),
            _ => {}
        }
        if line.starts_with("WATCH ") {
            seen.push(line);
        } else if line.contains(" passed, ") {
            summary = Some(line);
        }
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    assert_eq!(seen, ["WATCH SERVING", "WATCH NOT_SERVING", "WATCH SERVING"]);
    assert_eq!(summary.as_deref(), Some("5 passed, 0 failed"), "exit {status}");
}

#[test]
fn grpcore_health_client_against_grpcio_server() {
    let mut peer = python_peer_server("health_server.py", &[]);
    let env = Environment::new(1);
    let client = health_client(&env, peer.port);
    let mut stdin = peer.child.stdin.take().unwrap();
    let mut set = |service: &str, status: &str| {
        writeln!(stdin, "set {service} {status}").unwrap();
        stdin.flush().unwrap();
    };

    assert_eq!(check(&client, "").unwrap(), ServingStatus::Serving);
    assert_eq!(check(&client, "no.such.Service").unwrap_err().code(), Code::NotFound);

    let mut watch = client.watch(ask(SERVICE)).start();
    assert_eq!(next_status(&mut watch).unwrap(), ServingStatus::ServiceUnknown);
    for status in ["SERVING", "NOT_SERVING", "SERVING"] {
        set(SERVICE, status);
        assert_eq!(next_status(&mut watch).unwrap().as_str_name(), status);
    }
    assert_eq!(check(&client, SERVICE).unwrap(), ServingStatus::Serving);
    set("-", "NOT_SERVING");
    // The peer reads its stdin on a thread of its own: wait until the change is visible
    // before the watch, whose first answer is the status at that moment. (Starting the watch
    // at once raced the peer, and lost under valgrind at b92a2d2: SERVING came first.)
    let deadline = Instant::now() + Duration::from_secs(10);
    while check(&client, "").unwrap() != ServingStatus::NotServing {
        assert!(Instant::now() < deadline, "the peer never applied the overall NOT_SERVING");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut whole = client.watch(ask("")).start();
    assert_eq!(next_status(&mut whole).unwrap(), ServingStatus::NotServing);
    watch.cancel();
    whole.cancel();
    drop(stdin); // the peer stops
}

#[test]
fn client_side_health_checking_takes_a_server_without_health_as_serving() {
    // What ChannelBuilder::health_check documents of the core: the Watch answers
    // UNIMPLEMENTED, and the backend is used as if it were serving.
    let env = Environment::new(1);
    let server = start_echo_server(&env);
    let channel = ChannelBuilder::new(&env)
        .health_check(SERVICE)
        .connect(&format!("ipv4:127.0.0.1:{}", server.port()))
        .unwrap();
    let reply = channel
        .unary(&UNARY, &request("no health here", 7), CallOptions::new().timeout(Duration::from_secs(10)).wait_for_ready(true))
        .wait()
        .unwrap();
    assert_eq!(reply.message().seq, 7);
}
