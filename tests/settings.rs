//! Typed channel and server settings: bad values fail at build time by name, and good ones
//! reach the core (observed through what they change on the wire or in connectivity).

mod common;

use std::time::{Duration, Instant};

use common::*;
use grpcore::{
    CallOptions, ChannelBuilder, Code, Compression, ConnectivityState, Environment, Error, ResourceQuota, ServerBuilder,
    ServerContext, ServiceBuilder, Status,
};

fn config_error(r: Result<impl std::fmt::Debug, Error>) -> String {
    match r {
        Err(Error::Config(m)) => {
            assert_eq!(m.kind(), grpcore::ConfigErrorKind::Setting, "{m}");
            m.message().to_string()
        }
        other => panic!("expected Error::Config, got {other:?}"),
    }
}

const TARGET: &str = "127.0.0.1:1";

#[test]
fn bad_channel_settings_fail_connect_naming_the_setting() {
    let env = Environment::new(1);
    let b = || ChannelBuilder::new(&env);
    let too_long = Duration::from_millis(i32::MAX as u64 + 1);
    let cases: Vec<(&str, ChannelBuilder)> = vec![
        ("keepalive_time", b().keepalive_time(Duration::ZERO)),
        ("keepalive_time", b().keepalive_time(too_long)),
        ("keepalive_timeout", b().keepalive_timeout(Duration::ZERO)),
        ("idle_timeout", b().idle_timeout(Duration::ZERO)),
        ("idle_timeout", b().idle_timeout(Duration::MAX)),
        ("http2_initial_stream_window_size", b().http2_initial_stream_window_size(0)),
        ("http2_initial_stream_window_size", b().http2_initial_stream_window_size(1 << 31)),
        ("http2_max_pings_without_data", b().http2_max_pings_without_data(u32::MAX)),
        ("load_balancing_policy", b().load_balancing_policy("")),
        ("load_balancing_policy", b().load_balancing_policy("round robin")),
        ("default_authority", b().default_authority("")),
        ("service_config", b().service_config("{\"methodConfig\": [")),
        ("service_config", b().service_config("[]")),
        ("service_config", b().service_config("")),
    ];
    for (name, builder) in cases {
        let m = config_error(builder.connect(TARGET));
        assert!(m.contains(name), "{name}: {m}");
    }
}

#[test]
fn bad_server_settings_fail_build_naming_the_setting() {
    let env = Environment::new(1);
    let b = || ServerBuilder::new(&env).register_service(echo_service()).bind("127.0.0.1:0");
    let too_long = Duration::from_millis(i32::MAX as u64 + 1);
    let cases: Vec<(&str, ServerBuilder)> = vec![
        ("keepalive_time", b().keepalive_time(Duration::ZERO)),
        ("keepalive_timeout", b().keepalive_timeout(too_long)),
        ("http2_min_recv_ping_interval_without_data", b().http2_min_recv_ping_interval_without_data(too_long)),
        ("http2_max_ping_strikes", b().http2_max_ping_strikes(u32::MAX)),
        ("http2_initial_stream_window_size", b().http2_initial_stream_window_size(4)),
        ("max_concurrent_streams", b().max_concurrent_streams(0)),
        ("max_connection_idle", b().max_connection_idle(Duration::ZERO)),
        ("max_connection_age", b().max_connection_age(Duration::ZERO)),
        ("max_connection_age_grace", b().max_connection_age_grace(too_long)),
    ];
    for (name, builder) in cases {
        let m = config_error(builder.build());
        assert!(m.contains(name), "{name}: {m}");
    }
}

#[test]
fn the_first_bad_setting_is_reported_even_after_good_ones() {
    let env = Environment::new(1);
    let m = config_error(
        ChannelBuilder::new(&env)
            .keepalive_timeout(Duration::ZERO)
            .keepalive_time(Duration::from_secs(30))
            .idle_timeout(Duration::ZERO)
            .connect(TARGET),
    );
    assert!(m.contains("keepalive_timeout"), "{m}");
}

#[test]
fn zero_is_accepted_where_it_means_something() {
    let env = Environment::new(1);
    let server = ServerBuilder::new(&env)
        .register_service(echo_service())
        .bind("127.0.0.1:0")
        .http2_min_recv_ping_interval_without_data(Duration::ZERO)
        .http2_max_ping_strikes(0)
        .max_connection_age_grace(Duration::ZERO)
        .build()
        .unwrap();
    let channel = ChannelBuilder::new(&env)
        .http2_max_pings_without_data(0)
        .keepalive_time(Duration::from_micros(1)) // rounds up to 1 ms, not down to 0
        .connect(&format!("127.0.0.1:{}", server.port()))
        .unwrap();
    channel.unary(&UNARY, &request("zero", 1), CallOptions::new()).wait().unwrap();
}

#[test]
fn service_config_the_core_rejects_fails_connect() {
    let env = Environment::new(1);
    // Valid JSON, but "timeout" must be a duration string like "1.5s".
    let m = config_error(
        ChannelBuilder::new(&env)
            .service_config(r#"{"methodConfig": [{"name": [{"service": "a.B"}], "timeout": "forever"}]}"#)
            .connect(TARGET),
    );
    assert!(m.contains("service_config"), "{m}");
}

#[test]
fn every_setting_together_still_serves_calls() {
    let env = Environment::new(2);
    let quota = ResourceQuota::new("settings-test");
    quota.resize(256 << 20);
    // The handler reports the user agent that reached it and replies `response_size` bytes;
    // a request with sleep_ms set waits until the call ends (its deadline) instead.
    let service = ServiceBuilder::new(SERVICE)
        .add_unary(&UNARY, |req: EchoRequest, ctx: ServerContext| async move {
            if req.sleep_ms > 0 {
                ctx.cancelled().await;
                return Err(Status::new(Code::Cancelled, "ended while waiting"));
            }
            let agent = ctx.request_metadata().get("user-agent").unwrap_or("").to_string();
            Ok::<_, Status>(EchoResponse { message: agent, payload: vec![b'x'; req.response_size as usize], ..Default::default() })
        })
        .build();
    let server = ServerBuilder::new(&env)
        .register_service(service)
        .bind("127.0.0.1:0")
        .keepalive_time(Duration::from_secs(60))
        .keepalive_timeout(Duration::from_secs(5))
        .keepalive_permit_without_calls(true)
        .http2_min_recv_ping_interval_without_data(Duration::from_secs(1))
        .http2_max_ping_strikes(3)
        .http2_initial_stream_window_size(1 << 20)
        .http2_bdp_probe(false)
        .max_concurrent_streams(100)
        .max_connection_idle(Duration::from_secs(60))
        .max_connection_age(Duration::from_secs(600))
        .max_connection_age_grace(Duration::from_secs(5))
        .default_compression(Compression::Deflate)
        .resource_quota(&quota)
        .max_receive_message_len(8 << 20)
        .build()
        .unwrap();
    let proxy = ByteProxy::start(server.port());
    let channel = ChannelBuilder::new(&env)
        .keepalive_time(Duration::from_secs(30))
        .keepalive_timeout(Duration::from_secs(5))
        .keepalive_permit_without_calls(true)
        .http2_max_pings_without_data(0)
        .http2_initial_stream_window_size(1 << 20)
        .http2_bdp_probe(false)
        .idle_timeout(Duration::from_secs(60))
        .default_authority("echo.test")
        .load_balancing_policy("round_robin")
        .service_config(r#"{"methodConfig": [{"name": [{"service": "grpcore.test.Echo"}], "timeout": "10s"}]}"#)
        .enable_retries(true)
        .default_compression(Compression::Gzip)
        .resource_quota(&quota)
        .user_agent("settings-test/1")
        .connect(&format!("127.0.0.1:{}", proxy.port))
        .unwrap();
    // 5 MiB is over the 4 MiB default receive limit and under the server's 8 MiB one;
    // pseudo-random bytes, so compression cannot shrink it under the default.
    let noise = |n: usize| (0..n as u64).map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8).collect::<Vec<u8>>();
    let mut req = request("all", 3);
    req.payload = noise(5 << 20);
    req.response_size = 1;
    let reply = channel.unary(&UNARY, &req, CallOptions::new()).wait().unwrap();
    assert_eq!(reply.message().payload.len(), 1);
    assert!(reply.message().message.starts_with("settings-test/1"), "user-agent {:?}", reply.message().message);
    // The service config's 10 s timeout ends a call that sets none (1.51 ends service-config
    // timeouts 1-2 s early; a loaded machine may add a few).
    let mut slow = request("slow", 1);
    slow.sleep_ms = 60_000;
    let start = Instant::now();
    let err = channel.unary(&UNARY, &slow, CallOptions::new().timeout(Duration::from_secs(40))).wait().unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert!((Duration::from_secs(7)..Duration::from_secs(30)).contains(&start.elapsed()), "took {:?}", start.elapsed());
    // 9 MiB is over the server's 8 MiB limit.
    req.payload = noise(9 << 20);
    let err = channel.unary(&UNARY, &req, CallOptions::new()).wait().unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    // Requests go gzip (the channel's default), responses deflate (the server's).
    proxy.new_messages();
    let mut req = compressible(100_000);
    req.response_size = 100_000;
    channel.unary(&UNARY, &req, CallOptions::new()).wait().unwrap();
    let (up, down) = proxy.new_messages();
    assert_wire_format(&up, "gzip", "request with the channel's default compression");
    assert_wire_format(&down, "deflate", "response with the server's default compression");
}

#[test]
fn resource_quota_outlives_or_not_its_users_in_any_order() {
    let env = Environment::new(1);
    for order in 0..3 {
        let quota = ResourceQuota::new("order");
        let server = ServerBuilder::new(&env)
            .register_service(echo_service())
            .bind("127.0.0.1:0")
            .resource_quota(&quota)
            .build()
            .unwrap();
        let channel = ChannelBuilder::new(&env)
            .resource_quota(&quota.clone())
            .connect(&format!("127.0.0.1:{}", server.port()))
            .unwrap();
        if order == 0 {
            drop(quota.clone());
            drop(quota);
            channel.unary(&UNARY, &request("q", order), CallOptions::new()).wait().unwrap();
            drop(channel);
            drop(server);
        } else if order == 1 {
            quota.resize(64 << 20);
            channel.unary(&UNARY, &request("q", order), CallOptions::new()).wait().unwrap();
            drop(server);
            drop(channel);
            drop(quota);
        } else {
            let shared = quota.clone();
            std::thread::spawn(move || shared.resize(32 << 20)).join().unwrap();
            channel.unary(&UNARY, &request("q", order), CallOptions::new()).wait().unwrap();
            drop(channel);
            drop(quota);
            drop(server);
        }
    }
    // A quota that never met an environment.
    let lonely = ResourceQuota::new("lonely");
    lonely.resize(1 << 20);
    drop(lonely);
}

#[test]
fn default_compression_on_each_builder_shrinks_the_wire() {
    let env = Environment::new(1);
    let server = start_echo_server(&env);
    let proxy = ByteProxy::start(server.port());
    let target = format!("127.0.0.1:{}", proxy.port);
    let plain = ChannelBuilder::new(&env).connect(&target).unwrap();
    let gzip = ChannelBuilder::new(&env).default_compression(Compression::Gzip).connect(&target).unwrap();
    let opts = || CallOptions::new().timeout(Duration::from_secs(10));
    let (plain_up, _) = proxy.measure(|| {
        plain.unary(&UNARY, &compressible(100_000), opts()).wait().unwrap();
    });
    let (gzip_up, _) = proxy.measure(|| {
        gzip.unary(&UNARY, &compressible(100_000), opts()).wait().unwrap();
    });
    assert!(plain_up > 100_000, "uncompressed request: {plain_up} bytes");
    assert!(gzip_up < 10_000, "gzip request: {gzip_up} bytes");
    let (up, _) = proxy.new_messages();
    assert_eq!(up.iter().map(|m| m.format()).collect::<Vec<_>>(), ["identity", "gzip"], "plain, then gzip");

    let server = ServerBuilder::new(&env)
        .register_service(echo_service())
        .bind("127.0.0.1:0")
        .default_compression(Compression::Gzip)
        .build()
        .unwrap();
    let proxy = ByteProxy::start(server.port());
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", proxy.port)).unwrap();
    let mut req = request("big answer", 1);
    req.response_size = 100_000;
    let (_, down) = proxy.measure(|| {
        let reply = channel.unary(&UNARY, &req, opts()).wait().unwrap();
        assert_eq!(reply.message().payload.len(), 100_000);
    });
    assert!(down < 10_000, "gzip response: {down} bytes");
    assert_wire_format(&proxy.new_messages().1, "gzip", "the server's default compression");
}

#[test]
fn max_concurrent_streams_makes_the_client_queue_calls() {
    let env = Environment::new(2);
    let server = ServerBuilder::new(&env)
        .register_service(echo_service())
        .bind("127.0.0.1:0")
        .max_concurrent_streams(1)
        .build()
        .unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    channel.unary(&UNARY, &request("warm up", 0), CallOptions::new()).wait().unwrap();
    let mut slow = request("slow", 1);
    slow.sleep_ms = 400;
    let start = Instant::now();
    let calls: Vec<_> = (0..3)
        .map(|_| channel.unary(&UNARY, &slow, CallOptions::new().timeout(Duration::from_secs(20))))
        .collect();
    for r in futures::executor::block_on(futures::future::join_all(calls)) {
        r.unwrap();
    }
    let took = start.elapsed();
    // One stream at a time: three 400 ms calls take at least 1.2 s (in parallel, ~0.4 s).
    assert!(took >= Duration::from_millis(1150), "took {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// Waits (bounded) for a ready channel to leave `Ready`; returns the state it went to.
fn wait_until_not_ready(channel: &grpcore::Channel, within: Duration) -> ConnectivityState {
    futures::executor::block_on(channel.wait_for_connected(Instant::now() + Duration::from_secs(10))).unwrap();
    let changed = futures::executor::block_on(channel.state_changed(ConnectivityState::Ready, Instant::now() + within));
    changed.unwrap_or_else(|| panic!("the channel stayed ready for {within:?}"))
}

#[test]
fn server_max_connection_idle_closes_an_idle_connection() {
    let env = Environment::new(1);
    let server = ServerBuilder::new(&env)
        .register_service(echo_service())
        .bind("127.0.0.1:0")
        .max_connection_idle(Duration::from_millis(300))
        .build()
        .unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    let start = Instant::now();
    let next = wait_until_not_ready(&channel, Duration::from_secs(10));
    assert_ne!(next, ConnectivityState::Ready);
    assert!(start.elapsed() >= Duration::from_millis(250), "took {:?}", start.elapsed());
    // The next call reconnects.
    channel.unary(&UNARY, &request("again", 2), CallOptions::new().wait_for_ready(true)).wait().unwrap();
}

#[test]
fn server_max_connection_age_lets_a_call_finish_within_the_grace() {
    let env = Environment::new(1);
    let server = ServerBuilder::new(&env)
        .register_service(echo_service())
        .bind("127.0.0.1:0")
        .max_connection_age(Duration::from_millis(300))
        .max_connection_age_grace(Duration::from_secs(5))
        .build()
        .unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    // A call longer than the connection's age completes: GOAWAY stops new calls only.
    let mut slow = request("outlives the connection", 1);
    slow.sleep_ms = 1_000;
    let reply = channel.unary(&UNARY, &slow, CallOptions::new().timeout(Duration::from_secs(10))).wait().unwrap();
    assert_eq!(reply.message().seq, 1);
    let next = wait_until_not_ready(&channel, Duration::from_secs(10));
    assert_ne!(next, ConnectivityState::Ready);
}

#[test]
fn server_max_connection_age_grace_cancels_calls_that_run_over() {
    let env = Environment::new(1);
    let server = ServerBuilder::new(&env)
        .register_service(echo_service())
        .bind("127.0.0.1:0")
        .max_connection_age(Duration::from_millis(200))
        .max_connection_age_grace(Duration::from_millis(200))
        .build()
        .unwrap();
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", server.port())).unwrap();
    // The handler would answer after 20 s and the deadline is 30 s away: ended at about
    // 0.4 s by the age and its grace, with room for valgrind on a loaded machine (the leak
    // check runs this) and still far from either.
    let mut slow = request("too slow", 1);
    slow.sleep_ms = 20_000;
    let start = Instant::now();
    let err = channel.unary(&UNARY, &slow, CallOptions::new().timeout(Duration::from_secs(30))).wait().unwrap_err();
    assert_eq!(err.code(), grpcore::Code::Unavailable, "{err}");
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
}

#[test]
fn client_idle_timeout_takes_the_channel_back_to_idle() {
    let env = Environment::new(1);
    let server = start_echo_server(&env);
    let channel = ChannelBuilder::new(&env)
        .idle_timeout(Duration::from_millis(300))
        .connect(&format!("127.0.0.1:{}", server.port()))
        .unwrap();
    channel.unary(&UNARY, &request("once", 1), CallOptions::new()).wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut state = channel.state(false);
    while state != ConnectivityState::Idle {
        state = futures::executor::block_on(channel.state_changed(state, deadline))
            .unwrap_or_else(|| panic!("still {state:?} after 10 s"));
    }
    // Idle is not broken: the next call reconnects.
    channel.unary(&UNARY, &request("twice", 2), CallOptions::new()).wait().unwrap();
}
