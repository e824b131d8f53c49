//! Keepalive: client pings, the server's enforcement of how often they may come, and the
//! ping timeout that detects a dead connection.
//!
//! What the 1.51 core does (src/core/ext/transport/chttp2/transport):
//! - A client never sends two pings less than 1 s apart while calls are open (or while
//!   `keepalive_permit_without_calls` is on): `writing.cc` hard-codes that floor, and
//!   `grpc.http2.min_time_between_pings_ms` is still in the headers but read nowhere. So a
//!   client "pinging every 100 ms" pings about once a second; there is no 10 s clamp.
//! - A client stops pinging after `grpc.http2.max_pings_without_data` (default 2) pings
//!   until it sends data again, so a test of enforcement sets it to 0 (unlimited).
//! - The server counts a strike for each ping that comes sooner than
//!   `grpc.http2.min_ping_interval_without_data_ms` after the previous one (the first ping
//!   never strikes), and sends `GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings")` when the strikes
//!   exceed `grpc.http2.max_ping_strikes`. A limit of 0 means no limit (never GOAWAY), so
//!   the strictest setting is 1: the third ping ends the connection.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use grpcore::{CallOptions, ChannelBuilder, Code, Environment, ServerBuilder};

/// A client that pings as fast as the core lets it, during calls and between them.
fn eager_pinger(env: &Environment, port: u16) -> grpcore::Channel {
    ChannelBuilder::new(env)
        .keepalive_time(Duration::from_millis(100))
        .keepalive_timeout(Duration::from_secs(5))
        .keepalive_permit_without_calls(true)
        .http2_max_pings_without_data(0)
        .connect(&format!("127.0.0.1:{port}"))
        .unwrap()
}

fn slow_request(ms: i32) -> EchoRequest {
    let mut req = request("slow", 1);
    req.sleep_ms = ms;
    req
}

#[test]
fn strict_server_sends_too_many_pings_goaway_and_the_call_fails_unavailable() {
    let env = Environment::new(1);
    let server = ServerBuilder::new(&env)
        .register_service(echo_service())
        .bind("127.0.0.1:0")
        .http2_min_recv_ping_interval_without_data(Duration::from_secs(10))
        .http2_max_ping_strikes(1)
        .build()
        .unwrap();
    let channel = eager_pinger(&env, server.port());
    let start = Instant::now();
    let err = channel
        .unary(&UNARY, &slow_request(30_000), CallOptions::new().timeout(Duration::from_secs(60)))
        .wait()
        .unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    // Pings at ~0.1 s (no strike), ~1.1 s (strike 1), ~2.1 s (strike 2 > 1: GOAWAY); a
    // bandwidth probe at connection start can push the series back by a second, and a
    // loaded machine by a few more (the handler's 30 s sleep is far away).
    assert!(took >= Duration::from_millis(1_500) && took < Duration::from_secs(15), "took {took:?}: {err}");
    // The 1.51 core reports it as "UNAVAILABLE: Too many pings".
    let message = err.to_string().to_lowercase();
    assert!(message.contains("too many pings") || message.contains("too_many_pings"), "{err}");
}

#[test]
fn the_same_pinging_is_fine_when_the_server_allows_it() {
    let env = Environment::new(1);
    let server = ServerBuilder::new(&env)
        .register_service(echo_service())
        .bind("127.0.0.1:0")
        .http2_min_recv_ping_interval_without_data(Duration::from_millis(500))
        .http2_max_ping_strikes(1)
        .keepalive_permit_without_calls(true)
        .build()
        .unwrap();
    let channel = eager_pinger(&env, server.port());
    let reply = channel
        .unary(&UNARY, &slow_request(3_500), CallOptions::new().timeout(Duration::from_secs(20)))
        .wait()
        .unwrap();
    assert_eq!(reply.message().seq, 1);
    // And between calls, with no call open.
    std::thread::sleep(Duration::from_millis(2_500));
    channel.unary(&UNARY, &request("after idle pings", 2), CallOptions::new()).wait().unwrap();
}

#[test]
fn zero_max_ping_strikes_means_no_limit_not_zero_tolerance() {
    let env = Environment::new(1);
    let server = ServerBuilder::new(&env)
        .register_service(echo_service())
        .bind("127.0.0.1:0")
        .http2_min_recv_ping_interval_without_data(Duration::from_secs(10))
        .http2_max_ping_strikes(0)
        .build()
        .unwrap();
    let channel = eager_pinger(&env, server.port());
    // Three or four too-early pings go unpunished.
    let reply = channel
        .unary(&UNARY, &slow_request(3_500), CallOptions::new().timeout(Duration::from_secs(20)))
        .wait()
        .unwrap();
    assert_eq!(reply.message().seq, 1);
}

#[test]
fn without_permit_without_calls_the_server_strikes_pings_on_an_idle_connection() {
    // The server allows frequent pings during calls but not while none is open (its
    // keepalive_permit_without_calls is off: an idle connection may ping every 2 hours).
    let env = Environment::new(1);
    let server = ServerBuilder::new(&env)
        .register_service(echo_service())
        .bind("127.0.0.1:0")
        .http2_min_recv_ping_interval_without_data(Duration::from_millis(500))
        .http2_max_ping_strikes(1)
        .build()
        .unwrap();
    // Through a proxy that keeps what the server sent, to see why the connection ended.
    let proxy = ByteProxy::start(server.port());
    let channel = eager_pinger(&env, proxy.port);
    channel.unary(&UNARY, &request("connect", 1), CallOptions::new()).wait().unwrap();
    let watch = channel.state_changed(grpcore::ConnectivityState::Ready, Instant::now() + Duration::from_secs(15));
    let next = futures::executor::block_on(watch).expect("the idle connection was closed for pinging");
    assert_ne!(next, grpcore::ConnectivityState::Ready);
    // Not any drop: the server's GOAWAY with ENHANCE_YOUR_CALM (0xb), "too_many_pings".
    let goaways: Vec<Vec<u8>> = proxy.frames_down(0).into_iter().filter(|(kind, _)| *kind == 7).map(|(_, p)| p).collect();
    assert!(
        goaways.iter().any(|p| p.len() >= 8 && p[4..8] == [0, 0, 0, 0xb] && p[8..] == *b"too_many_pings"),
        "no GOAWAY(ENHANCE_YOUR_CALM, too_many_pings) from the server; GOAWAY payloads: {goaways:?}"
    );
}

/// A TCP proxy to `target` that can stop forwarding (keeping both sockets open): to the
/// client, a peer that went silent without closing anything.
struct FreezableProxy {
    port: u16,
    frozen: Arc<AtomicBool>,
}

impl FreezableProxy {
    fn start(target: u16) -> FreezableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let flag = frozen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let flag = flag.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    if flag.load(Ordering::SeqCst) {
                                        // Swallow everything from now on, but keep the
                                        // sockets open (they live as long as this thread).
                                        continue;
                                    }
                                    if to.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    });
                }
            }
        });
        FreezableProxy { port, frozen }
    }

    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }
}

#[test]
fn keepalive_timeout_detects_a_silent_peer_long_before_the_call_deadline() {
    let env = Environment::new(1);
    let server = ServerBuilder::new(&env)
        .register_service(echo_service())
        .bind("127.0.0.1:0")
        .http2_min_recv_ping_interval_without_data(Duration::ZERO)
        .build()
        .unwrap();
    let proxy = FreezableProxy::start(server.port());
    let channel = ChannelBuilder::new(&env)
        .keepalive_time(Duration::from_millis(200))
        .keepalive_timeout(Duration::from_millis(500))
        .http2_max_pings_without_data(0)
        .connect(&format!("127.0.0.1:{}", proxy.port))
        .unwrap();
    channel.unary(&UNARY, &request("warm up", 0), CallOptions::new()).wait().unwrap();
    let call = channel.unary(&UNARY, &slow_request(20_000), CallOptions::new().timeout(Duration::from_secs(30)));
    std::thread::sleep(Duration::from_millis(300));
    proxy.freeze();
    let start = Instant::now();
    let err = call.wait().unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    // Next ping within ~1 s (the core's floor), unanswered for 0.5 s: the core says
    // "keepalive watchdog timeout". Bounded with room for a loaded machine, still far from
    // the handler's 20 s and the deadline's 30 s.
    assert!(took < Duration::from_secs(12), "took {took:?}: {err}");
    assert!(err.to_string().contains("keepalive"), "{err}");
}
